"""Files written safely: every report, manifest, partial output, lock and cache stamp goes through here.

:func:`atomic_write` writes to a temporary file in the target folder, fsyncs it and renames it
into place, so a reader sees the old file or the new one, never half of one; a new file gets the
permissions any Unix tool would give it (``0666`` less the umask), a replaced one keeps its own (as
``cp`` and shell redirection do).

Files nerbatch names itself beside an output (partial outputs, locks, manifests) are never opened
through a link: :func:`open_new` creates them afresh with ``O_EXCL | O_NOFOLLOW`` after removing
whatever was left at the name, and :func:`open_own` opens an existing one only if it is a plain
file with no other name, so a link or hard link planted there cannot send a write elsewhere.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import stat
import tempfile

from ..errors import OutputError

__all__ = [
    "atomic_write", "umask_mode", "same_file", "open_new", "open_own", "no_follow", "is_stream", "fd_alias",
    "replace_target", "kept_mode",
]

_UMASK: int | None = None


def umask_mode(mode: int = 0o666) -> int:
    """``mode`` less this process's umask, as any Unix tool creates files (0o666 for a file, 0o777 for a folder).

    The umask is read once: from ``/proc/self/status`` where there is one (no window in which
    another thread could create a file under a changed umask), else by setting it and back.
    """
    global _UMASK
    if _UMASK is None:
        mask = None
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("Umask:"):
                        mask = int(line.split()[1], 8)
                        break
        except (OSError, ValueError, IndexError):
            mask = None
        if mask is None:
            mask = os.umask(0)
            os.umask(mask)
        _UMASK = mask
    return mode & ~_UMASK


def kept_mode(path: str, default: int) -> int:
    """The permission bits a file replacing ``path`` gets: those of the regular file there now
    (as ``cp`` and ``>`` keep them), else ``default``."""
    try:
        st = os.stat(path)
    except OSError:
        return default
    return stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else default


def no_follow(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that never follows a link at the last component."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)


def open_new(path: str, mode: int | None = None) -> int:
    """Create ``path`` as a new, empty file for writing and return its descriptor.

    Whatever is at the name (a file of an earlier run, a planted link or hard link) is removed
    first, and the file is created with ``O_EXCL | O_NOFOLLOW``: the write can only land in a new
    file at that name. ``mode``: default ``0666`` less the umask. Raises OSError.
    """
    for _ in range(10):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except FileExistsError:  # something appeared at the name again: remove it again
            continue
        try:
            os.fchmod(fd, umask_mode() if mode is None else mode)
        except OSError:
            pass
        return fd
    raise OSError(errno.EEXIST, f"{path}: keeps being created by something else")


def open_own(path: str, flags: int = os.O_RDWR) -> int:
    """Open an existing file that nerbatch made (a partial output to resume) without following a
    link; refuses (OSError) a link, anything but a regular file, and a file with other names."""
    fd = no_follow(path, flags)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise OSError(errno.EPERM, "not a plain file of nerbatch's own (a link, a hard link or a special file)")
    return fd


_FD_PATH = re.compile(r"/(?:proc/(?:self|thread-self|%d)/fd|dev/fd)/(\d+)")


@functools.lru_cache(maxsize=4)
def _fd_pattern(pid: int) -> re.Pattern:
    return re.compile(_FD_PATH.pattern % pid)


def fd_alias(path: str) -> int | None:
    """The descriptor number that ``path`` names, when it is (or links to) ``/dev/fd/N`` or
    ``/proc/self/fd/N`` (``/dev/stdout`` links there): written through that descriptor, as the
    shell does, so ``-o /dev/stdout >> log`` appends. None for other paths."""
    pattern = _fd_pattern(os.getpid())
    p = os.path.abspath(path)
    for _ in range(40):
        m = pattern.fullmatch(p)
        if m:
            return int(m.group(1))
        try:
            link = os.readlink(p)
        except OSError:
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), link))
    return None


def is_stream(path: str) -> bool:
    """An existing path (links followed) that is a character device, a FIFO or a socket
    (``/dev/null``, a named pipe), or a descriptor alias (``/dev/stdout``, :func:`fd_alias`).
    Outputs there are written as a stream, in place: no temporary file, no rename, nothing beside."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        return True
    return not stat.S_ISDIR(st.st_mode) and fd_alias(path) is not None


def replace_target(path: str) -> str:
    """The file an atomic replacement of ``path`` replaces: ``path`` itself, or for a symbolic
    link the file it points to (the link stays a link). Raises :class:`OutputError` for a link to
    nothing and for a block device."""
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        st = os.stat(real)
    except FileNotFoundError:
        if real != path:
            raise OutputError(
                f"{path}: is a symbolic link to a missing file ({real})",
                hint="give the path of the file to write, not a dangling link",
            ) from None
        return path
    except OSError:
        return real
    if stat.S_ISBLK(st.st_mode):
        raise OutputError(f"{path}: is a block device; nerbatch does not write to disks", hint="choose a file")
    return real


def atomic_write(path: str, data: str | bytes, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``data`` atomically (temp file + fsync + rename). A link at ``path`` is
    replaced, never followed (this is for nerbatch's own files). Raises OSError."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        try:
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else umask_mode()
        except OSError:
            mode = umask_mode()
        os.fchmod(fd, mode)
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
