"""Where a pipeline's records come from: one module per source kind, chosen by the registry
in `registry.py`."""
