"""Typed rows for queries behind the `SilverStore` Protocol (`base.py`), one module per store:
the lake's silver Parquet (`lake.py`, the embedded default) and PostgreSQL (`postgres.py`, with
its `pg*.py` parts), kept caught up by a follower (`follower.py`). What every store and query
engine shares lives here, with the writers: the columns (`schema.py`), the rollup plan and its
partials (`rollup.py`, `partials.py`) and what a new spec version may change (`evolution.py`)."""
