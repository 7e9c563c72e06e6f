"""Queries on a pipeline's silver rows: the checked model (`model.py`), the SQL both stores run
(`sql.py`, `rollup_sql.py` for aggregates answered from rollups) with each engine's `Dialect`
(`dialect.py`), one engine per store behind the `QueryEngine` Protocol (`base.py`; `duckdb.py`
over the lake, `postgres.py`), which store answers (`stores.py`), and the answer's JSON shape
(`result.py`). The columns and rollups they read are the writers' (`dash_ray.silver`)."""
