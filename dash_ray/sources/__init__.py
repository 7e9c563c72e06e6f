"""Where a pipeline's records come from: a `Receiver` (requests on an ingest route) or a
`Feeder` (run inside the pipeline actor), both in `base.py`, one module per kind, chosen by
the registry in `registry.py`."""
