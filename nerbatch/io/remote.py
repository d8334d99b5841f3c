"""Inputs, outputs, reports and model folders at URLs: any fsspec filesystem (``s3://``, ``gs://``,
``az://``, ``file://``, ``memory://``), reached through :func:`fsspec.core.url_to_fs`.

Credentials come from each filesystem's usual configuration (environment, profiles), never from
nerbatch's options. Local paths never come here: they keep their own code (links never followed,
kernel locks, inodes compared). What a URL output guarantees instead:

- an output appears under its final name only when complete: it is assembled under a temporary
  key beside it (``.NAME.nerbatch.part``) and moved into place (:class:`Upload`);
- checkpoints: each one ships the bytes written since the last one as a numbered chunk object
  (``.NAME.nerbatch.part.c00000``, ...), so memory and local disk stay at one checkpoint's worth
  of output (a local spool file), nothing is uploaded twice while the run goes, and ``--resume``
  continues after the chunks the manifest counts; the chunks are concatenated, streamed, at the end;
- the lock is an object created only if absent (S3 ``If-None-Match: *``; :class:`ObjectLock`).

Functions that touch storage raise :class:`OSError` (a storage library's own exceptions, such as
missing credentials, become ``OSError`` with the library's message), as local file calls do, so
the callers' error messages serve both.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import json
import os
import re
import shutil
import socket
import time
from typing import BinaryIO, Callable

from ..errors import InputError, LockedError, NerbatchError

__all__ = [
    "is_url", "filesystem", "canonical", "split", "join", "walk", "isdir", "isfile", "size", "open_read",
    "open_write", "read_bytes", "write_bytes", "append_text", "remove", "numbered", "chunks_upto", "makedirs",
    "listing", "get_files", "put_folder", "Upload", "ObjectLock",
]

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
COPY_BLOCK = 8 << 20  # bytes per read when chunks are joined


def is_url(path) -> bool:
    """``scheme://...``: a path for fsspec (``hf:ID`` and local paths are not)."""
    return isinstance(path, str) and _URL.match(path) is not None


def filesystem(url: str):
    """``(fs, path)`` for ``url``; an unknown scheme or a missing fsspec back-end is an :class:`InputError`."""
    try:
        from fsspec.core import url_to_fs
    except ImportError:
        raise InputError("URLs need the fsspec package", path=url, hint="pip install fsspec s3fs") from None
    try:
        return url_to_fs(url)
    except ImportError as exc:  # fsspec knows the scheme, its package is missing: "Install s3fs to access S3"
        raise InputError(f"no filesystem for this URL: {_line(exc)}", path=url,
                         hint="pip install the package fsspec names (s3fs, gcsfs, adlfs)") from None
    except ValueError as exc:
        raise InputError(f"no filesystem for this URL: {_line(exc)}", path=url,
                         hint="use s3://, gs://, az://, file:// or another fsspec protocol") from None


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _storage(fn: Callable) -> Callable:
    """Storage errors as OSError: a library's own exception (botocore's ``NoCredentialsError``, ...)
    becomes ``OSError(EIO, "NoCredentialsError: ...")``."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OSError, NerbatchError):
            raise
        except Exception as exc:  # noqa: BLE001 - anything the storage library raises is an I/O failure
            raise OSError(errno.EIO, f"{type(exc).__name__}: {_line(exc)}") from exc

    return wrapper


def canonical(url: str) -> str:
    """One spelling per object (``s3://b//k`` and ``s3://b/k`` are one): for comparing paths."""
    fs, path = filesystem(url)
    return fs.unstrip_protocol(path)


def split(url: str) -> tuple[str, str]:
    """``("s3://b/out", "a.conll")`` for ``s3://b/out/a.conll``."""
    folder, _, name = url.rstrip("/").rpartition("/")
    return folder, name


def join(folder: str, *names: str) -> str:
    return "/".join([folder.rstrip("/"), *names])


def _walk_order(rel: str):
    """A folder's files before its subfolders, each sorted: the order of a local folder walk."""
    parts = rel.split("/")
    return [(1, d) for d in parts[:-1]] + [(0, parts[-1])]


def walk(url: str, glob: str | None, input_fmt: str | None, known: Callable[[str], bool]) -> list[tuple[str, str]] | None:
    """The input files under the folder ``url`` as ``(url, name under it)``, picked as a local folder
    walk picks them (hidden files and folders left out; ``glob`` matched against the name, or the
    relative path when it has a ``/``; else ``known``); None when ``url`` is a file."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    try:
        if _storage(fs.isfile)(root):
            return None
        fs.invalidate_cache(root)
        names = _storage(fs.find)(root)
        missing = not names and not _storage(fs.isdir)(root)
    except OSError as exc:
        raise _read_error(url, exc) from None
    if missing:
        raise InputError("no such file or folder", path=url, hint="check the URL")
    found = []
    for name in names:
        rel = name[len(root):].lstrip("/")
        if not rel or any(p.startswith(".") for p in rel.split("/")):
            continue
        full = join(url, rel)
        if glob is not None:
            if not fnmatch.fnmatchcase(rel if "/" in glob else rel.rpartition("/")[2], glob):
                continue
        elif not (input_fmt or known(full)):
            continue
        found.append((full, rel))
    found.sort(key=lambda f: _walk_order(f[1]))
    return found


def _read_error(url: str, exc: OSError) -> InputError:
    if isinstance(exc, FileNotFoundError):
        return InputError("no such file, folder or bucket", path=url, hint="check the URL")
    if isinstance(exc, PermissionError):
        return InputError("permission denied", path=url, hint="check the storage credentials (environment, profile)")
    return InputError(f"cannot read: {exc.strerror or exc}", path=url)


def _probe(url: str, test: str) -> bool:
    """``fs.isdir`` or ``fs.isfile`` (``test``) of ``url``; storage errors are an :class:`InputError`."""
    fs, path = filesystem(url)
    try:
        return bool(_storage(getattr(fs, test))(path))
    except OSError as exc:
        raise _read_error(url, exc) from None


def isdir(url: str) -> bool:
    """A folder (a prefix with objects under it) at ``url``; storage errors are an :class:`InputError`."""
    return _probe(url, "isdir")


def isfile(url: str) -> bool:
    return _probe(url, "isfile")


@_storage
def size(url: str) -> int:
    """The object's size in bytes; FileNotFoundError when there is none."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    info = fs.info(path)
    if info.get("type") == "directory":
        raise IsADirectoryError(errno.EISDIR, "is a folder", url)
    return int(info["size"])


@_storage
def open_read(url: str) -> BinaryIO:
    """The object at ``url`` for binary reading, buffered (``readline(limit)`` as a local file has it)
    and seekable (Parquet reads row groups by offset)."""
    import io

    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    if fs.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "is a folder", url)
    return io.BufferedReader(fs.open(path, "rb"), 1 << 16)


@_storage
def open_write(url: str) -> BinaryIO:
    """A new object at ``url`` written as a stream (on S3: a multipart upload, visible once closed)."""
    fs, path = filesystem(url)
    return fs.open(path, "wb")


@_storage
def read_bytes(url: str) -> bytes | None:
    """The object's bytes, None when there is none."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    try:
        return fs.cat_file(path)
    except FileNotFoundError:
        return None


@_storage
def write_bytes(url: str, data: bytes) -> None:
    """Replace the object at ``url`` with ``data`` atomically: put under a temporary key beside it,
    then moved to its name."""
    fs, path = filesystem(url)
    folder, name = split(path)
    tmp = join(folder, f".{name}.nerbatch.part")
    fs.pipe_file(tmp, data)
    fs.mv(tmp, path)


@_storage
def append_text(url: str, text: str) -> None:
    """Append to the object at ``url`` (an object store cannot append: read, then written whole)."""
    old = read_bytes(url) or b""
    write_bytes(url, old + text.encode("utf-8"))


@_storage
def remove(url: str) -> None:
    """Delete the object at ``url`` if there is one."""
    fs, path = filesystem(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass
    fs.invalidate_cache(path)


@_storage
def numbered(base: str, start: int = 0, tag: str = "") -> list[str]:
    """The objects ``BASE.TAG00000``, ``BASE.TAG00001``, ... that exist, from ``start`` up to the
    first missing number (probed one by one: no listing of a folder that may hold many outputs)."""
    fs, _ = filesystem(base)
    found = []
    i = start
    while True:
        url = f"{base}.{tag}{i:05d}"
        path = filesystem(url)[1]
        fs.invalidate_cache(path)
        if not fs.exists(path):
            return found
        found.append(url)
        i += 1


CHUNK = "c"  # the tag of a partial output's chunk objects: .NAME.nerbatch.part.c00000


def chunks_upto(part: str, nbytes: int) -> list[str] | None:
    """The chunk objects of the partial output ``part`` that hold its first ``nbytes`` bytes (a
    checkpoint), or None when they do not add up to exactly that."""
    held, kept = 0, []
    try:
        for url in numbered(part, tag=CHUNK):
            if held == nbytes:
                break
            held += size(url)
            kept.append(url)
    except OSError:
        return None
    return kept if held == nbytes else None


def makedirs(url: str) -> None:
    """Create a folder where the filesystem has real folders (``file://``); object stores have none
    (and s3fs would create a missing *bucket*, which a run never should)."""
    fs, path = filesystem(url)
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        try:
            fs.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create output folder: {exc.strerror or exc}", path=url) from None


@_storage
def listing(url: str) -> dict[str, dict]:
    """``{name under url: info}`` for every object under the folder ``url`` (hidden ones included)."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    fs.invalidate_cache(root)
    found = fs.find(root, detail=True)
    return {name[len(root):].lstrip("/"): info for name, info in found.items() if name[len(root):].lstrip("/")}


@_storage
def get_files(url: str, names: list[str], folder: str) -> None:
    """Download ``url/NAME`` to ``folder/NAME`` for each name (streamed to disk)."""
    fs, root = filesystem(url)
    for name in names:
        target = os.path.join(folder, *name.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fs.get_file(join(root, name), target)


@_storage
def put_folder(folder: str, url: str, *, last: tuple[str, ...] = (), replace: bool = False) -> None:
    """Upload the files of the local ``folder`` under ``url``, the names in ``last`` after all others
    (in that order). ``replace``: what ``url`` held is replaced; the ``last`` names are deleted
    first and the objects the new folder lacks before ``last`` goes up, so a reader that finds the
    first of ``last`` finds the whole new folder and never a mix of old and new."""
    fs, root = filesystem(url)
    names = sorted(os.path.relpath(os.path.join(d, n), folder).replace(os.sep, "/")
                   for d, _, ns in os.walk(folder) for n in ns)
    old = set(listing(url)) if replace else set()
    for name in last:
        if name in old:
            fs.rm_file(join(root, name))
    for name in names:
        if name not in last:
            fs.put_file(os.path.join(folder, *name.split("/")), join(root, name))
    for name in sorted(old - set(names) - set(last)):
        fs.rm_file(join(root, name))
    for name in last:
        if name in names:
            fs.put_file(os.path.join(folder, name), join(root, name))
    fs.invalidate_cache(root)


class Upload:
    """The object-store side of an atomic output (:class:`nerbatch.io.base.AtomicOutput` writes the
    bytes to a local spool file and hands them here).

    :meth:`ship` (a checkpoint) uploads the spool as the next chunk object ``PART.cNNNNN`` and
    empties it: memory and local disk hold one checkpoint's bytes at most, and each byte goes up
    once while the run goes. :meth:`publish` joins the chunks and the spool, streamed, under the
    temporary key ``PART`` (``.NAME.nerbatch.part`` beside the output) and moves that to the
    output's name: the output appears there complete or not at all. ``resume_bytes``: continue
    after the chunks that hold that many bytes (a checkpoint); OSError when they do not.
    """

    def __init__(self, url: str, *, part: str | None = None, resume_bytes: int | None = None) -> None:
        folder, name = split(url)
        self.url = url
        self.part = part or join(folder, f".{name}.nerbatch.part")
        self.chunks: list[str] = []
        self.bytes = 0
        if resume_bytes is not None:
            kept = chunks_upto(self.part, resume_bytes)
            if kept is None:
                raise OSError(errno.EIO, f"the chunks of the partial output {self.part} do not hold its checkpoint")
            self.chunks, self.bytes = kept, resume_bytes

    def _chunk(self, i: int) -> str:
        return f"{self.part}.{CHUNK}{i:05d}"

    @_storage
    def ship(self, spool: str) -> int:
        """Upload the spool file's bytes as the next chunk and empty it; the output's bytes so far."""
        n = os.path.getsize(spool)
        if n:
            fs, _ = filesystem(self.url)
            url = self._chunk(len(self.chunks))
            fs.put_file(spool, filesystem(url)[1])
            self.chunks.append(url)
            self.bytes += n
            os.truncate(spool, 0)  # the spool is written with O_APPEND: the next bytes start at 0
        return self.bytes

    @_storage
    def publish(self, spool: str, before_move: Callable | None = None) -> None:
        """Join the chunks and the spool under the temporary key, call ``before_move(st)`` (``st``:
        ``st_size`` of the finished output, ``st_ino`` None), move it to the output's name, and
        delete the chunks (and any left past them by an earlier run)."""
        from types import SimpleNamespace

        fs, target = filesystem(self.url)
        tmp = filesystem(self.part)[1]
        if not self.chunks:
            fs.put_file(spool, tmp)
        else:
            with fs.open(tmp, "wb") as out:
                for url in self.chunks:
                    with fs.open(filesystem(url)[1], "rb") as src:
                        shutil.copyfileobj(src, out, COPY_BLOCK)
                with open(spool, "rb") as src:
                    shutil.copyfileobj(src, out, COPY_BLOCK)
        if before_move is not None:
            fs.invalidate_cache(tmp)
            before_move(SimpleNamespace(st_size=int(fs.info(tmp)["size"]), st_ino=None))
        fs.mv(tmp, target)
        fs.invalidate_cache(target)
        self._drop_chunks()

    def _drop_chunks(self) -> None:
        for url in self.chunks + numbered(self.part, len(self.chunks), tag=CHUNK):
            remove(url)
        self.chunks = []

    def discard(self) -> None:
        """Remove the chunks and the temporary key (best effort: the run is failing already)."""
        try:
            self._drop_chunks()
            remove(self.part)
        except OSError:
            pass


class ObjectLock:
    """The lock of an output at a URL: the object ``.NAME.nerbatch.lock`` beside it, created only if
    absent (S3's conditional put, ``If-None-Match: *``; other filesystems: as atomic as their
    exclusive create). It holds the owner's pid and host. An object store cannot free a lock when
    its owner dies, so a lock whose owner is a process of this host that no longer runs is taken
    over; one from a run on another host is left to whoever knows it is dead (the error names the
    lock object to delete)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.held = False

    @_storage
    def _create(self) -> bool:
        fs, path = filesystem(self.url)
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}).encode()
        try:
            fs.pipe_file(path, body, mode="create")
            return True
        except FileExistsError:
            return False

    def acquire(self) -> None:
        from ..errors import OutputError

        try:
            for _ in range(5):
                if self._create():
                    self.held = True
                    return
                owner = self._owner()
                if owner is None:  # released meanwhile: try again
                    continue
                if owner and not _gone(owner):
                    raise LockedError(
                        f"{self.url}: another nerbatch run (pid {owner.get('pid', '?')} on {owner.get('host', '?')}) "
                        "is writing this output",
                        hint="wait for it to finish; if that run is dead (killed on another machine), delete the lock object",
                    )
                remove(self.url)  # its owner is gone, or it names none: take it over
        except OSError as exc:
            folder = split(self.url)[0]
            if isinstance(exc, FileNotFoundError):
                raise OutputError(f"{folder}: no such bucket or folder", hint="check the URL of the output") from None
            raise OutputError(f"{folder}: cannot write here: {exc.strerror or exc}") from None
        raise LockedError(f"{self.url}: could not take the lock")

    def _owner(self) -> dict | None:
        """The lock's owner (``{}``: unreadable), None when there is no lock any more."""
        try:
            data = json.loads(read_bytes(self.url) or b"null")
        except ValueError:
            return {}
        return data if isinstance(data, dict) or data is None else {}

    def release(self) -> None:
        if self.held:
            try:
                remove(self.url)
            except OSError:
                pass
            self.held = False


def _gone(owner: dict) -> bool:
    """The lock's owner was a process of this host that no longer runs."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False
