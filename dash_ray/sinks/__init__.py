"""Where a pipeline's mapped records go once they are durable: the `Sink` Protocol and the
hook that hands each mapped batch to every sink (`base.py`), and the parts of the spec's
sinks (webhook, Slack, email): which records (`select.py`), their text (`template.py`), when
they go and what they say (`grouping.py`), retries and the breaker (`policy.py`), the durable
state (`store.py`) and the sending (`outbound.py`). What runs them in a pipeline's process is
`dash_ray.pipeline.delivery`."""
