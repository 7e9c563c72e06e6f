"""The lake: bronze (raw), silver (mapped) and dead-letter Parquet files through fsspec.

Layout, for any backend (a local folder, `s3://bucket/prefix`, `memory://`):

    <root>/<area>/<pipeline>/date=YYYY-MM-DD/<first_seq:020d>-<last_seq:020d>.parquet

A file's name is its sequence range, so writing the same range again replaces it (a flush
repeated after a crash is idempotent) and the highest range tells recovery where the lake
ends. Writes are atomic: a local file is written under a temporary name, fsync'd and renamed;
an S3 object is one PUT. Errors from the storage backend become StorageError, cause chained.
DuckDB's httpfs extension cannot be installed offline, so DuckDB reads the lake through the
pyarrow dataset `dataset()` returns, for folders and S3 alike.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from dash_ray.errors import StorageError
from dash_ray.lake_listing import local_files

__all__ = ["AREAS", "Area", "Lake", "LakeFile"]

# The three areas of every pipeline, and rollup areas named `rollup-<granularity>-<plan key>`
# (partial aggregates kept beside silver; see dash_ray.silver.rollup).
Area = str
AREAS: tuple[Area, ...] = ("bronze", "silver", "dead")
_ROLLUP_AREA = re.compile(r"^rollup-[0-9a-z]{2,4}-[0-9a-f]{10}$")
_EXPIRED = "_expired.json"  # silver ranges retention removed (`note_expired`)
_NAME = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/(\d{20})-(\d{20})\.parquet$")
# zstd: at level 1 it writes about as fast as snappy here and makes files ~30% smaller.
_COMPRESSION = "zstd"


@dataclass(frozen=True, order=True)
class LakeFile:
    first_seq: int
    last_seq: int
    day: dt.date
    path: str
    size: int = field(default=0, compare=False)


class Lake:
    """One lake root on one filesystem."""

    def __init__(self, fs: fsspec.AbstractFileSystem, root: str, url: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")
        self.url = url
        self._local = "file" in _protocols(fs)

    @classmethod
    def from_url(cls, url: str, *, storage_options: dict[str, Any] | None = None) -> Lake:
        """`/abs/path`, `file:///abs/path`, `s3://bucket/prefix` or `memory://name`."""
        options = dict(storage_options or {})
        if url.startswith("/"):
            url = "file://" + url
        protocol, _, rest = url.partition("://")
        if protocol not in ("file", "s3", "memory") or not rest:
            raise ValueError(f"unsupported lake URL {url!r}: use a folder, file://, s3:// or memory://")
        if protocol == "s3":
            options.setdefault("skip_instance_cache", True)
        try:
            fs = fsspec.filesystem(protocol, **options)
        except Exception as exc:  # bad options surface here
            raise StorageError(f"cannot open lake {url}: {exc}") from exc
        root = rest if protocol != "file" else "/" + rest.lstrip("/")
        return cls(fs, root, url)

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    @property
    def is_local(self) -> bool:
        """Whether the lake is a folder on this machine (DuckDB can read it directly)."""
        return self._local

    def _dir(self, area: Area, pipeline: str) -> str:
        if area not in AREAS and not _ROLLUP_AREA.match(area):
            raise ValueError(f"unknown lake area {area!r}")
        return f"{self.root}/{area}/{pipeline}"

    def rollup_areas(self) -> list[Area]:
        """The rollup areas present in the lake (any pipeline)."""
        if not self._guard(self.fs.exists, self.root):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self._guard(self.fs.ls, self.root, detail=False)]
        return sorted(n for n in names if _ROLLUP_AREA.match(n))

    def path(self, area: Area, pipeline: str, *, first_seq: int, last_seq: int, day: dt.date) -> str:
        return f"{self._dir(area, pipeline)}/date={day.isoformat()}/{first_seq:020d}-{last_seq:020d}.parquet"

    # -- writing ---------------------------------------------------------------------------

    def write(self, area: Area, pipeline: str, table: pa.Table, *, first_seq: int, last_seq: int,
              day: dt.date) -> str:
        """Write `table` as the file for `first_seq..last_seq`; atomic, replaces an existing
        file of the same range. Returns its path."""
        path = self.path(area, pipeline, first_seq=first_seq, last_seq=last_seq, day=day)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=_COMPRESSION, compression_level=1)
        data = sink.getvalue().to_pybytes()
        try:
            if self._local:
                _write_local(path, data)
            else:
                self.fs.pipe_file(path, data)
        except Exception as exc:  # every backend error becomes StorageError
            raise StorageError(f"cannot write {path} to the lake: {exc}") from exc
        return path

    def remove_after(self, area: Area, pipeline: str, seq: int) -> int:
        """Delete files whose range starts after `seq` (left by an unfinished flush)."""
        doomed = [f.path for f in self.files(area, pipeline, superseded=True) if f.first_seq > seq]
        for path in doomed:
            self._guard(self.fs.rm_file, path)
        return len(doomed)

    def purge(self, pipeline: str) -> None:
        """Delete every area of `pipeline`, rollups included."""
        for area in (*AREAS, *self.rollup_areas()):
            self.drop(area, pipeline)

    def drop(self, area: Area, pipeline: str) -> bool:
        """Delete `pipeline`'s folder in `area`; whether there was one."""
        directory = self._dir(area, pipeline)
        if not self._guard(self.fs.exists, directory):
            return False
        self._guard(self.fs.rm, directory, recursive=True)
        return True

    def check(self) -> None:
        """Write, read back and delete a small probe; StorageError when the lake is unusable."""
        path = f"{self.root}/_probe/{uuid.uuid4().hex}"
        try:
            if self._local:
                _write_local(path, b"probe")
            else:
                self.fs.pipe_file(path, b"probe")
            if self.fs.cat_file(path) != b"probe":
                raise OSError("probe read back different bytes")
            self.fs.rm_file(path)
        except Exception as exc:
            raise StorageError(f"lake {self.url} is not usable: {exc}") from exc

    # -- reading ---------------------------------------------------------------------------

    def files(self, area: Area, pipeline: str, *, superseded: bool = False) -> list[LakeFile]:
        """The files of an area that readers use, in seq order: a file whose range lies
        inside another file's range of the same day is superseded (compaction wrote the
        bigger one and has not yet deleted it) and left out, unless `superseded`."""
        directory = self._dir(area, pipeline)
        if self._local:
            listed = self._guard(local_files, directory)
        elif self._guard(self.fs.exists, directory):
            listed = [(path, int(info.get("size") or 0))
                      for path, info in self._guard(self.fs.find, directory, detail=True).items()]
        else:
            listed = []
        found = []
        for path, size in listed:
            match = _NAME.search(path)
            if match:
                day, first, last = match.groups()
                found.append(LakeFile(int(first), int(last), dt.date.fromisoformat(day), path, size))
        found.sort()
        return found if superseded else _live(found)

    def last_seq(self, area: Area, pipeline: str) -> int:
        files = self.files(area, pipeline)
        return max((f.last_seq for f in files), default=0)

    def read(self, area: Area, pipeline: str, *, after_seq: int | None = None,
             columns: list[str] | None = None) -> pa.Table | None:
        """Rows with seq > `after_seq` (all when None), in seq order; None when there are none."""
        files = [f for f in self.files(area, pipeline) if after_seq is None or f.last_seq > after_seq]
        return self._read_files(files, after_seq=after_seq, columns=columns)

    def tail(self, area: Area, pipeline: str, n: int) -> pa.Table | None:
        """The newest `n` rows by seq, reading only the newest files needed."""
        chosen: list[LakeFile] = []
        rows = 0
        for f in reversed(self.files(area, pipeline)):
            if rows >= n:
                break
            chosen.append(f)
            rows += self._guard(self._num_rows, f.path)
        table = self._read_files(sorted(chosen))
        if table is None:
            return None
        return table.slice(max(0, table.num_rows - n))

    def dataset(self, area: Area, pipeline: str) -> ds.Dataset | None:
        """The area as one pyarrow dataset (hive `date` partition column included), for DuckDB
        or pyarrow scans; None when it holds no file yet."""
        files = self.files(area, pipeline)
        if not files:
            return None
        return self.dataset_of(files, base_dir=self._dir(area, pipeline))

    def dataset_of(self, files: list[LakeFile], *, base_dir: str | None = None) -> ds.Dataset:
        """These files as one pyarrow dataset with one schema over all of them (a spec update
        can add or retype columns); with `base_dir`, the hive `date` column too, unless the
        files hold a `date` column of their own (a field of that name), which wins."""
        filesystem = pafs.LocalFileSystem() if self._local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        schema = pa.unify_schemas([self._guard(self._schema, f.path) for f in files],
                                  promote_options="permissive")
        if base_dir is None or "date" in schema.names:
            return ds.dataset([f.path for f in files], filesystem=filesystem, format="parquet", schema=schema)
        schema = schema.append(pa.field("date", pa.string()))
        return ds.dataset(
            [f.path for f in files], filesystem=filesystem, format="parquet", schema=schema,
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            partition_base_dir=base_dir,
        )

    def datasets_of(self, files: list[LakeFile]) -> list[ds.Dataset]:
        """These files as pyarrow datasets, one per group of files whose columns have the same
        types (a column some lack reads as null): usually one; more when a spec update widened
        a field (int to double or string), whose old values Arrow would not convert as SQL
        does. A reader unifies them itself (DuckDB's UNION ALL BY NAME)."""
        filesystem = pafs.LocalFileSystem() if self._local else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
        groups: list[tuple[pa.Schema, list[str]]] = []
        for f in files:
            schema = self._guard(self._schema, f.path)
            for i, (unified, paths) in enumerate(groups):
                try:
                    groups[i] = (pa.unify_schemas([unified, schema]), [*paths, f.path])
                    break
                except (pa.ArrowTypeError, pa.ArrowInvalid):
                    continue
            else:
                groups.append((schema, [f.path]))
        return [ds.dataset(paths, filesystem=filesystem, format="parquet", schema=schema) for schema, paths in groups]

    def _read_files(self, files: list[LakeFile], *, after_seq: int | None = None,
                    columns: list[str] | None = None) -> pa.Table | None:
        if not files:
            return None
        tables = [self._guard(self._read_one, f.path, columns) for f in files]
        table = pa.concat_tables(tables, promote_options="permissive")
        if after_seq is not None:
            table = table.filter(pc.greater(table.column("seq"), after_seq))
        return table.sort_by("seq") if table.num_rows else table

    def read_file(self, file: LakeFile, *, columns: list[str] | None = None) -> pa.Table:
        """One file's rows."""
        return self._guard(self._read_one, file.path, columns)

    def delete(self, files: list[LakeFile]) -> None:
        """Delete these files (gone already is fine)."""
        for file in files:
            try:
                self.fs.rm_file(file.path)
            except FileNotFoundError:
                continue
            except Exception as exc:  # translated at the adapter edge
                raise StorageError(f"lake {self.url}: cannot delete {file.path}: {exc}") from exc

    # -- what retention removed ------------------------------------------------------------

    def expired(self, pipeline: str) -> list[tuple[int, int]]:
        """The seq ranges whose silver rows retention removed (`note_expired`), in order."""
        data = self.read_note("silver", pipeline, _EXPIRED)
        return [] if data is None else [(int(first), int(last)) for first, last in json.loads(data)["ranges"]]

    def note_expired(self, pipeline: str, gone: list[LakeFile], *, kept: list[LakeFile]) -> None:
        """Remember the seq ranges of the silver files retention is about to delete (`gone`), so a
        reader tells rows removed from rows that never were (a live client's `gap`); ranges merge
        across seqs no `kept` file holds, so the record stays as short as the kept files allow."""
        ranges = sorted([*self.expired(pipeline), *((f.first_seq, f.last_seq) for f in gone)])
        held = [(f.first_seq, f.last_seq) for f in kept]
        merged: list[list[int]] = []
        for first, last in ranges:
            if merged and (first <= merged[-1][1] + 1 or not any(a < first and b > merged[-1][1] for a, b in held)):
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        self.write_note("silver", pipeline, _EXPIRED, json.dumps({"ranges": merged}).encode())

    def read_note(self, area: Area, pipeline: str, name: str) -> bytes | None:
        """A small file beside an area's `date=` folders (no reader lists it; purged with the area)."""
        path = f"{self._dir(area, pipeline)}/{name}"
        if not self._guard(self.fs.exists, path):
            return None
        try:
            return bytes(self.fs.cat_file(path))
        except FileNotFoundError:
            return None
        except Exception as exc:  # translated at the adapter edge
            raise StorageError(f"lake {self.url}: cannot read {path}: {exc}") from exc

    def write_note(self, area: Area, pipeline: str, name: str, data: bytes) -> None:
        """Write (atomically, replacing) a small file `read_note` reads."""
        path = f"{self._dir(area, pipeline)}/{name}"
        try:
            if self._local:
                _write_local(path, data)
            else:
                self.fs.pipe_file(path, data)
        except Exception as exc:  # translated at the adapter edge
            raise StorageError(f"cannot write {path} to the lake: {exc}") from exc

    def _read_one(self, path: str, columns: list[str] | None) -> pa.Table:
        with self.fs.open(path, "rb") as f:
            return pq.read_table(f, columns=columns)

    def _num_rows(self, path: str) -> int:
        with self.fs.open(path, "rb") as f:
            return int(pq.ParquetFile(f).metadata.num_rows)

    def _schema(self, path: str) -> pa.Schema:
        with self.fs.open(path, "rb") as f:
            return pq.ParquetFile(f).schema_arrow

    def _guard(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StorageError:
            raise
        except Exception as exc:  # translated at the adapter edge
            raise StorageError(f"lake {self.url}: {type(exc).__name__}: {exc}") from exc


def _live(files: list[LakeFile]) -> list[LakeFile]:
    """`files` (sorted) without those whose range another file of the same day covers."""
    by_day: dict[dt.date, list[LakeFile]] = {}
    for f in files:
        by_day.setdefault(f.day, []).append(f)
    keep: set[str] = set()
    for day_files in by_day.values():
        # Sorted by first seq, widest first for equal starts: a file is covered when an
        # earlier-listed file reaches at least as far.
        reach = -1
        for f in sorted(day_files, key=lambda f: (f.first_seq, -f.last_seq)):
            if f.last_seq > reach:
                keep.add(f.path)
                reach = f.last_seq
    return [f for f in files if f.path in keep]


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _write_local(path: str, data: bytes) -> None:
    directory = os.path.dirname(path)
    _makedirs_synced(directory)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _makedirs_synced(directory: str) -> None:
    """`os.makedirs`, then fsync the parent of each folder it created (top down): a new
    folder's entry in its parent is not durable until the parent is synced."""
    missing = []
    path = os.path.abspath(directory)
    while not os.path.isdir(path):
        missing.append(path)
        if os.path.dirname(path) == path:
            break
        path = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    for created in reversed(missing):
        _fsync_dir(os.path.dirname(created))


def _fsync_dir(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

