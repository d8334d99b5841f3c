"""Run state for unattended jobs: the output lock, per-output manifests and in-file checkpoints.

Beside each output ``out.conll`` nerbatch keeps ``.out.conll.nerbatch.json`` (the manifest) and,
while the output is being written, ``.out.conll.nerbatch.part`` (the partial output). The manifest
records what produced the output (input path, model, nerbatch version, options that change output)
and either ``"complete": true`` with the digest of the input's contents (:func:`input_digest`), or a
checkpoint: how many sentences are in the part file, its size in bytes at that point, the writer's
state, and the digest of the input bytes read by then. ``--resume`` skips complete outputs whose
manifest matches and whose input still has that digest, and continues a partial one from its last
checkpoint when the input still begins with the bytes the checkpoint was made from.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from typing import Any

from .. import __version__
from ..errors import InputError, LockedError, OutputError
from ..io.atomic import atomic_write


def sidecar(output: str, suffix: str) -> str:
    """``.NAME.nerbatch.SUFFIX`` beside the output (beside the file it links to, for a link:
    the partial output is renamed onto that file, and its lock is that file's; at a URL, an object
    beside it)."""
    from ..io.remote import is_url, join, split

    if is_url(output):
        folder, name = split(output)
        return join(folder, f".{name}.nerbatch.{suffix}")
    folder, name = os.path.split(os.path.realpath(output) if os.path.islink(output) else os.path.abspath(output))
    return os.path.join(folder, f".{name}.nerbatch.{suffix}")


def fingerprint(input_path: str, model_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must match for an existing output to count as done for this run besides the input's
    contents (see :func:`input_digest`); ``model_id``: see :func:`nerbatch.model.cache.model_identity`.
    Raises OSError when the input is missing."""
    from ..io.hf import split_ref
    from ..io.remote import canonical, is_url, size

    if is_url(input_path):
        size(input_path)
    else:
        os.stat(split_ref(input_path)[0])  # a dataset named with its split (DIR@SPLIT): the folder
    return {
        "input": canonical(input_path) if is_url(input_path) else os.path.realpath(input_path),
        "model": model_id,
        "nerbatch_version": __version__,
        "options": options,
    }


# Input formats whose readers read the file once, front to back, through io.base.open_binary: their
# bytes are hashed as they are read (io.base.watch_input), and a checkpoint records the digest of the
# bytes read up to it. Parquet files and dataset folders are hashed whole before they are read.


def input_digest(path: str, limit: int | None = None, part=None) -> dict:
    """The digest of an input's contents, ``{"bytes": n, "blake2b": hex}`` (see
    :class:`nerbatch.io.base.InputDigest`): a file's raw bytes (the first ``limit``; a compressed
    file's compressed bytes; ``part``: those of that :class:`~nerbatch.io.base.Slice` only), a parts
    folder's parts one after another (as it is read), or for a dataset folder (``DIR@SPLIT``: the folder)
    every file in it, by relative path and contents. Raises OSError when it cannot be read."""
    from ..io.base import InputDigest
    from ..io.hf import split_ref
    from ..io.parts import is_parts_folder, part_paths
    from ..io.remote import is_url, open_read

    def of_files(names: list[str], limit: int | None = None, start: int = 0, end: int | None = None) -> dict:
        digest = InputDigest()
        for name in names:
            with open_read(name) if is_url(name) else open(name, "rb") as fh:
                fh.seek(start)
                left = None if end is None else end - start
                while (limit is None or digest.bytes < limit) and (left is None or left > 0):
                    want = 1 << 20 if limit is None else min(1 << 20, limit - digest.bytes)
                    block = fh.read(want if left is None else min(want, left))
                    if not block:
                        break
                    digest.update(block)
                    left = None if left is None else left - len(block)
        return digest.value()

    top = split_ref(path)[0]
    if part is not None:
        return of_files([top], limit, part.start, part.end)
    if is_url(top) or not os.path.isdir(top):
        return of_files([top], limit)
    if is_parts_folder(top):
        try:
            return of_files(part_paths(top), limit)
        except InputError as exc:
            raise OSError(str(exc)) from None
    digest = InputDigest()
    for folder, dirs, names in os.walk(top):
        dirs.sort()
        for name in sorted(names):
            full = os.path.join(folder, name)
            one = of_files([full])
            digest.update(f"{os.path.relpath(full, top)}\0{one['bytes']}\0{one['blake2b']}\0".encode())
    return digest.value()


def same_input(path: str, recorded: dict | None, whole: bool, part=None) -> bool:
    """Whether the input ``path`` (``part``: that slice of it) still has the ``recorded`` digest
    (``whole``: all of it, else the first ``recorded["bytes"]`` bytes). A record from an older manifest (None): no.

    This reads the input (or its first bytes) once without parsing it, far cheaper than tagging it."""
    from ..io.hf import split_ref
    from ..io.remote import is_url, size

    if not isinstance(recorded, dict) or not isinstance(recorded.get("bytes"), int):
        return False
    top = split_ref(path)[0]
    try:
        if whole and part is None and is_url(top) and size(top) != recorded["bytes"]:
            return False
        if whole and part is None and not is_url(top) and os.path.isfile(top) and os.stat(top).st_size != recorded["bytes"]:
            return False  # changed size: no need to read it
        return input_digest(path, None if whole else recorded["bytes"], part) == recorded
    except OSError:
        return False


def load_manifest(output: str) -> dict | None:
    from ..io.remote import is_url, read_bytes

    try:
        if is_url(output):
            return json.loads(read_bytes(sidecar(output, "json")) or b"null")
        with open(sidecar(output, "json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def save_manifest(output: str, manifest: dict) -> None:
    """Write the manifest atomically."""
    from ..io.remote import is_url, write_bytes

    try:
        if is_url(output):
            write_bytes(sidecar(output, "json"), json.dumps(manifest).encode())
        else:
            atomic_write(sidecar(output, "json"), json.dumps(manifest))
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the run manifest: {exc.strerror}") from None


def remove_manifest(output: str) -> None:
    from ..io.remote import is_url, remove

    try:
        if is_url(output):
            remove(sidecar(output, "json"))
        else:
            os.unlink(sidecar(output, "json"))
    except OSError:
        pass


class OutputLock:
    """An exclusive lock on one output (``.NAME.nerbatch.lock`` beside it), held by the kernel.

    ``flock`` on the lock file: the kernel frees it when its owner exits, however it exits, so a
    lock left by a killed run (or one whose pid was since reused) never blocks the next run, and
    two runs that find a stale lock at the same moment cannot both take it. The file holds the
    owner's pid and host for the error message only. After taking the lock we check that the path
    still names the file we locked (another run may have removed it on release), else retry.
    The lock file is never opened through a link, and a link, hard link or special file found at
    its name (nerbatch never makes one) is removed, not written to. An output at a URL is locked by
    an object created only if absent (:class:`nerbatch.io.remote.ObjectLock`).
    """

    def __init__(self, target: str) -> None:
        from ..io.remote import ObjectLock, is_url

        self.path = sidecar(target, "lock")
        self.fd: int | None = None
        self.remote = ObjectLock(self.path) if is_url(target) else None  # at a URL: a conditionally created object

    @property
    def held(self) -> bool:
        return self.fd is not None or self.remote is not None and self.remote.held

    def acquire(self) -> None:
        import fcntl

        if self.remote is not None:
            self.remote.acquire()
            return

        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
            except FileNotFoundError:
                raise OutputError(f"{os.path.dirname(self.path)}: output folder does not exist") from None
            except OSError as exc:
                if os.path.islink(self.path):  # a planted link: remove it, never follow it
                    self._remove_foreign(None)
                    continue
                raise OutputError(f"{os.path.dirname(self.path)}: cannot write here: {exc.strerror}") from None
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:  # not a lock file nerbatch made
                os.close(fd)
                self._remove_foreign(st)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(fd)
                os.close(fd)
                raise LockedError(
                    f"{self.path}: another nerbatch run (pid {owner.get('pid', '?')} on {owner.get('host', '?')}) "
                    "is writing this output",
                    hint="wait for it to finish",
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # released and removed by its owner between our open and flock
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
            self.fd = fd
            return
        raise LockedError(f"{self.path}: could not take the lock")

    def _remove_foreign(self, st) -> None:
        """Remove what is at the lock's name (a link, or the file ``st`` describes)."""
        try:
            now = os.lstat(self.path)
            if st is None and stat.S_ISLNK(now.st_mode) or st is not None and now.st_ino == st.st_ino:
                os.unlink(self.path)
        except OSError as exc:
            if not isinstance(exc, FileNotFoundError):
                raise OutputError(f"{self.path}: is not a lock file and cannot be removed: {exc.strerror}") from None

    def release(self) -> None:
        if self.remote is not None:
            self.remote.release()
        if self.fd is not None:
            try:
                os.unlink(self.path)  # while still holding it: see the inode check in acquire
            except OSError:
                pass
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _owner(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def probe_locks(outputs: list[str]) -> None:
    """Take and drop every output's lock once before any work, so a run that would collide with
    another one exits 75 at once instead of half way. (Holding all of them for the whole run would
    need one open file per output, and a folder of 100k files exceeds the descriptor limit.)"""
    for out in outputs:
        with OutputLock(out):
            pass
