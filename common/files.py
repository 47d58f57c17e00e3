"""Writing shared files safely: every file another process (or a later run)
may read is written whole under a unique temporary name and moved into place
with `os.replace`, so a reader sees the old file or the new one, never a
truncated one; read-modify-write updates (results.csv, meta.json) hold a lock
file beside their target so that concurrent runs never lose each other's
changes."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from filelock import FileLock


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A unique temporary path beside `path`; on success it replaces `path`
    atomically, on failure it is removed and `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_json(path: str | Path, value, default=None) -> Path:
    """`default`: as json.dumps's, for records holding paths or numpy scalars."""
    return atomic_write_text(path, json.dumps(value, indent=1, default=default))


def lock_for(path: str | Path, timeout: float = 600) -> FileLock:
    """The lock that serialises read-modify-write updates of `path` (a
    `.lock` file beside it; held only for the length of one update)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.with_name(f".{path.name}.lock")), timeout=timeout)
