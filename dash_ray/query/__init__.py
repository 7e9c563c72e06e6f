"""Queries on a pipeline's silver rows: the checked model (`model.py`), the SQL both stores run
(`sql.py`), one engine per store (`duckdb.py` over the lake, `postgres.py`), rollups, and the
answer's JSON shape (`result.py`)."""
