import psycopg
import s3fs


def test_pg(pg_dsn):
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_s3(s3_server, s3_bucket):
    fs = s3fs.S3FileSystem(**s3_server["storage_options"], skip_instance_cache=True)
    fs.pipe(f"{s3_bucket}/a.txt", b"hi")
    assert fs.cat(f"{s3_bucket}/a.txt") == b"hi"
