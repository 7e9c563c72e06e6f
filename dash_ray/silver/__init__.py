"""Typed rows for queries behind the `SilverStore` Protocol (`base.py`), one module per store:
the lake's silver Parquet (`lake.py`, the embedded default)."""
