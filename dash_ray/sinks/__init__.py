"""Where a pipeline's mapped records go once they are durable: the `Sink` Protocol and the
hook that hands each mapped batch to every sink (`base.py`); one module per sink kind."""
