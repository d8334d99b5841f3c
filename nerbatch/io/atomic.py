"""Small files written safely: every report, manifest, log-free JSON and cache stamp goes through here.

:func:`atomic_write` writes to a temporary file in the target folder, fsyncs it and renames it
into place, so a reader sees the old file or the new one, never half of one; the file gets the
permissions any Unix tool would give it (``0666`` less the umask), not ``mkstemp``'s ``0600``.
"""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write", "umask_mode", "same_file"]

_UMASK: int | None = None


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less this process's umask (read once: ``os.umask`` can only be read by setting it)."""
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0)
        os.umask(_UMASK)
    return mode & ~_UMASK


def atomic_write(path: str, data: str | bytes, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename). Raises OSError."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        os.fchmod(fd, umask_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode(encoding) if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def same_file(a: str, b: str) -> bool:
    """Whether two paths name the same file: same real path, or (for links and bind mounts) the
    same inode; a path that does not exist yet is compared by its real path only."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
