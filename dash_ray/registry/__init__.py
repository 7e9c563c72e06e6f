"""The registry in plain Python: the supervisor of every pipeline, and what the platform asks of
its catalog beside it (access, dashboards, the web replicas' reports). The Ray actor in
`actors/registry.py` is a shell around `RegistryCore`."""
