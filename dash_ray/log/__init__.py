"""The write-ahead log behind a small Protocol (`base.py`), one module per backend."""
