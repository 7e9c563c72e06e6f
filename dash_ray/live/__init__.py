"""Live records: the pipeline's feed of its newest mapped records (`feed.py`), in the shape its
readers see (`records.py`), and the web replica's fan-out of it to WebSocket clients, resuming
without gaps (`fanout.py`)."""
