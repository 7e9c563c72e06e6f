"""Listing a local lake's area folder quickly: `os.scandir` over its `date=` folders. fsspec's
`find` costs about 1 ms per folder and 0.3 ms per file in Python, which every query paid on
each listing (0.1 s for 90 days of four areas); this is a few times cheaper and lists the same
files (`Lake.files` keeps those whose names are lake files)."""

from __future__ import annotations

import os

__all__ = ["local_files"]


def local_files(directory: str) -> list[tuple[str, int]]:
    """(path, size) of each file in the `date=` folders of `directory`; none when it is
    missing or a path below a file (as fsspec's listing had it: a lake that cannot be written
    to still starts, its flushes fail). A folder or file removed while listed (retention,
    compaction) is left out."""
    found: list[tuple[str, int]] = []
    try:
        days = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for folder in days:
        if not folder.name.startswith("date=") or not folder.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(folder.path))
        except FileNotFoundError:
            continue
        for entry in entries:
            try:
                found.append((entry.path, entry.stat(follow_symlinks=False).st_size))
            except FileNotFoundError:
                continue
    return found
