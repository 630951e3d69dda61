"""Files replaced whole: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomically"]


def write_atomically(
    path: Path, data: str | bytes, *, mode: int, keep_existing_mode: bool = False
) -> None:
    """Replace `path` with `data`: a temporary file beside it, fsync, rename.

    A new file gets `mode`. With `keep_existing_mode`, a file that exists keeps its mode and
    group, so an operator's `chgrp mosquitto` survives a rewrite.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        existing = path.stat() if keep_existing_mode and path.exists() else None
        if existing is None:
            os.fchmod(fd, mode)
        else:
            os.fchmod(fd, existing.st_mode & 0o777)
            with contextlib.suppress(PermissionError):  # only root or a member may chgrp
                os.fchown(fd, -1, existing.st_gid)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        with os.fdopen(fd, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
