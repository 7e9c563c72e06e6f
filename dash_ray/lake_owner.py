"""The commit step's fencing token in the lake: a pipeline's owner writes a marker naming it
(`<lake>/owners/<id>.json`: the owner epoch its log gave it, and a token of its own) once its
log is open, and checks it before each write of a commit (`dash_ray.pipeline.commit`), so an owner a newer
one replaced (a zombie on a partitioned or frozen node) writes nothing more to the lake.

The write-ahead log fences the same zombie's appends and trims (`dash_ray.log.base`); this
fences its commits of what it had acknowledged before it was replaced. Not guaranteed: the
check and the write are two steps, so a zombie that passes its check in the instant a new
owner takes over can still write one range; that range repeats what the log gave the new
owner (same records, same sequence numbers), and a file of another range does not hide it
from recovery (a range starting past the newest bronze file is discarded at start)."""

from __future__ import annotations

import contextlib
import json
import uuid

from dash_ray.errors import StorageError
from dash_ray.lake import Lake

__all__ = ["LakeFence", "forget_owner"]


def _path(lake: Lake, pipeline_id: str) -> str:
    return f"{lake.root}/owners/{pipeline_id}.json"


class LakeFence:
    """One owner's marker for one pipeline in one lake. Blocking I/O: call it in a thread."""

    def __init__(self, lake: Lake, pipeline_id: str) -> None:
        self.lake = lake
        self.pipeline_id = pipeline_id
        self.token = uuid.uuid4().hex
        self.epoch = 0
        self._taken = False

    def take(self, epoch: int) -> None:
        """Become the owner (after the log gave this owner `epoch`): whoever checks later
        and is not this owner is refused. A lake that cannot be written now does not stop the
        pipeline (its log keeps what it acknowledges): the marker is then written by the first
        `check`, before anything else is."""
        self.epoch = epoch
        with contextlib.suppress(StorageError):
            self._write()

    def _write(self) -> None:
        path = _path(self.lake, self.pipeline_id)
        data = json.dumps({"epoch": self.epoch, "owner": self.token}).encode()
        try:
            self.lake.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            self.lake.fs.pipe_file(path, data)
        except Exception as exc:
            raise StorageError(f"cannot write the owner marker {path}: {exc}") from exc
        self._taken = True

    def check(self) -> None:
        """Raise StorageError unless this is still the pipeline's owner (nothing is written)."""
        if not self._taken:
            self._write()
            return
        path = _path(self.lake, self.pipeline_id)
        try:
            marker = json.loads(self.lake.fs.cat_file(path))
        except Exception as exc:
            raise StorageError(f"pipeline {self.pipeline_id}: cannot read the owner marker {path}: {exc}") from exc
        if marker.get("owner") != self.token:
            raise StorageError(f"pipeline {self.pipeline_id}: owner epoch {self.epoch} was superseded by epoch "
                               f"{marker.get('epoch')} (a newer owner started); this one stores nothing more")


def forget_owner(lake: Lake, pipeline_id: str) -> None:
    """Delete the marker (a purged pipeline). Idempotent."""
    path = _path(lake, pipeline_id)
    try:
        if lake.fs.exists(path):
            lake.fs.rm_file(path)
    except Exception as exc:
        raise StorageError(f"cannot delete the owner marker {path}: {exc}") from exc
