"""Run state for unattended jobs: the output lock, per-output manifests and in-file checkpoints.

Beside each output ``out.conll`` nerbatch keeps ``.out.conll.nerbatch.json`` (the manifest) and,
while the output is being written, ``.out.conll.nerbatch.part`` (the partial output). The manifest
records what produced the output (input path, size, mtime, model, nerbatch version, options that
change output) and either ``"complete": true`` or a checkpoint: how many sentences are in the part
file, its size in bytes at that point, and the writer's state. ``--resume`` skips complete outputs
whose manifest matches, and continues a partial one from its last checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from typing import Any

from . import __version__
from .errors import LockedError, OutputError


def sidecar(output: str, suffix: str) -> str:
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.nerbatch.{suffix}")


def folder_stamp(model: str) -> str:
    """A hash of a model folder's files (names, sizes, mtimes): changes when any file does."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(model)):
        path = os.path.join(model, name)
        if os.path.isfile(path) and not name.startswith("."):
            st = os.stat(path)
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()


def model_id(model: str) -> str:
    """A model folder's identity: its path plus a hash of config and weight file sizes/mtimes."""
    if not os.path.isdir(model):
        return model
    return f"{os.path.abspath(model)}#{folder_stamp(model)[:16]}"


def fingerprint(input_path: str, model: str, options: dict[str, Any]) -> dict[str, Any]:
    """What must match for an existing output to count as done for this run."""
    st = os.stat(input_path)
    return {
        "input": os.path.abspath(input_path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "model": model_id(model),
        "nerbatch_version": __version__,
        "options": options,
    }


def load_manifest(output: str) -> dict | None:
    try:
        with open(sidecar(output, "json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def save_manifest(output: str, manifest: dict) -> None:
    """Write the manifest atomically (temp file + fsync + rename)."""
    path = sidecar(output, "json")
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(manifest, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the run manifest: {exc.strerror}") from None


def remove_manifest(output: str) -> None:
    try:
        os.unlink(sidecar(output, "json"))
    except OSError:
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock file on an output location; a lock left by a dead process is taken over."""

    def __init__(self, target: str) -> None:
        target = os.path.abspath(target)
        if os.path.isdir(target):
            self.path = os.path.join(target, ".nerbatch.lock")
        else:
            self.path = sidecar(target, "lock")
        self.held = False

    def acquire(self) -> None:
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path, encoding="utf-8") as fh:
                        owner = json.load(fh)
                except (OSError, ValueError):
                    owner = {}
                pid = owner.get("pid")
                if isinstance(pid, int) and owner.get("host") == me["host"] and not _alive(pid):
                    try:  # stale: its process is gone
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                raise LockedError(
                    f"{self.path}: another nerbatch run (pid {pid} on {owner.get('host', '?')}) is writing these outputs",
                    hint="wait for it to finish; remove the lock file only if that process is gone",
                ) from None
            except FileNotFoundError:
                raise OutputError(f"{os.path.dirname(self.path)}: output folder does not exist") from None
            except OSError as exc:
                raise OutputError(f"{os.path.dirname(self.path)}: cannot write here: {exc.strerror}") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise LockedError(f"{self.path}: could not take the lock")

    def release(self) -> None:
        if self.held:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            self.held = False

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
