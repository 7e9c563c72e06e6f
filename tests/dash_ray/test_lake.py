import datetime as dt
import os
import stat

import duckdb
import pyarrow as pa
import pytest

from dash_ray.errors import StorageError
from dash_ray.lake import Lake

DAY = dt.date(2026, 11, 23)


@pytest.fixture(params=["folder", "s3"])
def lake(request, tmp_path):
    if request.param == "folder":
        return Lake.from_url(str(tmp_path / "lake"))
    server = request.getfixturevalue("s3_server")
    bucket = request.getfixturevalue("s3_bucket")
    return Lake.from_url(f"s3://{bucket}/lake", storage_options=server["storage_options"])


def rows(first, last, **extra):
    seqs = list(range(first, last + 1))
    columns = {"seq": pa.array(seqs, pa.int64()), "v": [f"r{s}" for s in seqs]}
    columns.update(extra)
    return pa.table(columns)


def test_write_list_and_read(lake):
    lake.write("silver", "p", rows(1, 3), first_seq=1, last_seq=3, day=DAY)
    lake.write("silver", "p", rows(4, 6), first_seq=4, last_seq=6, day=DAY + dt.timedelta(days=1))
    files = lake.files("silver", "p")
    assert [(f.first_seq, f.last_seq) for f in files] == [(1, 3), (4, 6)]
    assert files[1].day == DAY + dt.timedelta(days=1) and "date=2026-11-24" in files[1].path
    assert lake.last_seq("silver", "p") == 6 and lake.last_seq("bronze", "p") == 0
    assert lake.read("silver", "p").column("seq").to_pylist() == [1, 2, 3, 4, 5, 6]
    assert lake.read("silver", "p", after_seq=4).column("seq").to_pylist() == [5, 6]
    assert lake.read("bronze", "p") is None


def test_rewriting_a_range_replaces_it(lake):
    lake.write("bronze", "p", rows(1, 3), first_seq=1, last_seq=3, day=DAY)
    lake.write("bronze", "p", rows(1, 3), first_seq=1, last_seq=3, day=DAY)
    assert len(lake.files("bronze", "p")) == 1 and lake.read("bronze", "p").num_rows == 3


def test_tail_reads_only_what_it_needs(lake):
    for first in range(1, 50, 10):
        lake.write("silver", "p", rows(first, first + 9), first_seq=first, last_seq=first + 9, day=DAY)
    assert lake.tail("silver", "p", 12).column("seq").to_pylist() == list(range(39, 51))
    assert lake.tail("silver", "p", 1000).num_rows == 50
    assert lake.tail("dead", "p", 5) is None


def test_remove_after_deletes_orphans(lake):
    for first in (1, 4, 7):
        lake.write("silver", "p", rows(first, first + 2), first_seq=first, last_seq=first + 2, day=DAY)
    assert lake.remove_after("silver", "p", 3) == 2
    assert lake.last_seq("silver", "p") == 3


def test_duckdb_queries_the_dataset_with_evolved_schema(lake):
    lake.write("silver", "p", rows(1, 2), first_seq=1, last_seq=2, day=DAY)
    lake.write("silver", "p", rows(3, 3, w=pa.array([1.5])), first_seq=3, last_seq=3, day=DAY)
    data = lake.dataset("silver", "p")
    con = duckdb.connect()
    con.register("silver", data)
    assert con.execute("select count(*), max(w), min(date) from silver").fetchone() == (3, 1.5, "2026-11-23")
    assert lake.dataset("bronze", "p") is None


def test_purge_removes_every_area(lake):
    for area in ("bronze", "silver", "dead"):
        lake.write(area, "p", rows(1, 1), first_seq=1, last_seq=1, day=DAY)
    lake.write("bronze", "other", rows(1, 1), first_seq=1, last_seq=1, day=DAY)
    lake.purge("p")
    assert all(lake.files(area, "p") == [] for area in ("bronze", "silver", "dead"))
    assert len(lake.files("bronze", "other")) == 1


def test_check_passes_on_a_good_lake(lake):
    lake.check()


def test_unusable_lakes_fail_check():
    with pytest.raises(StorageError):
        Lake.from_url("/dev/null/lake").check()


def test_missing_bucket_fails_check(s3_server):
    lake = Lake.from_url("s3://no-such-bucket/x", storage_options=s3_server["storage_options"])
    with pytest.raises(StorageError):
        lake.check()


def test_unsupported_url():
    with pytest.raises(ValueError):
        Lake.from_url("ftp://host/x")


def test_local_writes_fsync_the_parent_of_every_directory_they_create(tmp_path, monkeypatch):
    synced: set[str] = set()
    real_fsync = os.fsync

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            synced.add(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    base = os.path.realpath(tmp_path)
    lake = Lake.from_url(f"{base}/lake")
    lake.write("silver", "p", rows(1, 3), first_seq=1, last_seq=3, day=DAY)
    created = [f"{base}/lake", f"{base}/lake/silver", f"{base}/lake/silver/p",
               f"{base}/lake/silver/p/date=2026-11-23"]
    wanted = {os.path.dirname(d) for d in created} | {created[-1]}  # and the file's own folder
    assert wanted <= synced, f"not fsync'd: {sorted(wanted - synced)}"
