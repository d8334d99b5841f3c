"""nerbatch's on-disk cache and the identity of a model folder.

Everything nerbatch caches lives under :func:`default_cache_dir`: one entry folder per model,
precision and software (``aoti-*``: compiled packages of :mod:`nerbatch.tagging.compiled`; ``int8-*``: ONNX
Runtime int8 models of :mod:`nerbatch.tagging.int8`), written by :func:`save_entry`, found by
:func:`find_entry`, named by :func:`entry_key`; and ``hashes/``, the memo of file digests. A model folder's identity is a hash of its files' *contents*
(:func:`content_stamp`): a copy of a model with one weight changed and its mtime set back
(``cp -a``, edit, ``touch -r``) is a different model. Hashing a 90 MB MiniLM takes about 0.1 s, so
the digest of each file is remembered under the cache folder, keyed by the file's path, inode,
size, mtime *and* ctime (the last cannot be set back by ``touch``), and recomputed only when one of
them changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Callable

from ..errors import NerbatchError
from ..io.atomic import atomic_write, umask_mode

__all__ = [
    "default_cache_dir", "content_stamp", "model_identity", "Entry", "CacheError", "entry_key", "find_entry",
    "entry_meta", "save_entry", "fetch_model",
]


def default_cache_dir() -> str:
    """``$NERBATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nerbatch``, else ``~/.cache/nerbatch``."""
    if os.environ.get("NERBATCH_CACHE_DIR"):
        return os.environ["NERBATCH_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nerbatch")


def _file_digest(path: str, st: os.stat_result, memo_dir: str | None) -> str:
    key = json.dumps([os.path.realpath(path), st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
    memo = None
    if memo_dir is not None:
        memo = os.path.join(memo_dir, hashlib.sha256(key.encode()).hexdigest()[:40])
        try:
            with open(memo, encoding="ascii") as fh:
                digest = fh.read().strip()
            if len(digest) == 64:
                return digest
        except OSError:
            pass
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo is not None and os.path.isdir(os.path.dirname(memo_dir)):
        # only into a cache that exists already: a run that caches nothing (--no-compile) creates none
        try:
            os.makedirs(memo_dir, exist_ok=True)
            atomic_write(memo, digest)
        except OSError:
            pass  # a read-only cache only costs the hashing again
    return digest


def content_stamp(folder: str, cache_dir: str | None = None) -> str:
    """A hash of the names and contents of a model folder's files (hidden files left out)."""
    memo_dir = os.path.join(cache_dir or default_cache_dir(), "hashes")
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        st = os.stat(path)
        h.update(f"{name}:{st.st_size}:{_file_digest(path, st, memo_dir)};".encode())
    return h.hexdigest()


def model_identity(model: str) -> str:
    """A model's identity for manifests: a folder's real path plus its content stamp; a hub id as is."""
    if not os.path.isdir(model):
        return model
    return f"{os.path.realpath(model)}#{content_stamp(model)[:16]}"


# -- cache entries: compiled packages and int8 models -------------------------------------------------

ENTRY_FORMAT = 2  # bump when an entry's layout or the recipe of what it holds changes
ONNX_KINDS = ("int8", "onnx")  # entries that ONNX Runtime runs: int8, and "onnx" (fp32, --runtime onnx)
PACKAGE_FILES = {"int8": "model.int8.onnx", "onnx": "model.fp32.onnx"}  # else an AOTInductor "model.pt2"


class CacheError(Exception):
    """A cache entry could not be built or written; the caller runs without it."""


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: a folder with the model file, ``tokenizer.json`` and ``meta.json``."""

    folder: str
    precision: str

    @property
    def package(self) -> str:
        return os.path.join(self.folder, PACKAGE_FILES.get(self.precision, "model.pt2"))

    @property
    def tokenizer(self) -> str:
        return os.path.join(self.folder, "tokenizer.json")

    @property
    def meta(self) -> dict:
        with open(os.path.join(self.folder, "meta.json"), encoding="utf-8") as fh:
            return json.load(fh)


def entry_key(model: str, precision: str) -> str:
    """The entry name for a local model folder at a precision, on this software and CPU.

    fp32/bf16 entries (``aoti-*``) hold an AOTInductor package, keyed by torch's version and the
    CPU's instruction set; int8 entries (``int8-*``) and ``precision`` "onnx" entries (``onnx-*``, the
    fp32 copy of ``--runtime onnx``) hold an ONNX Runtime model, keyed by onnxruntime's version (torch
    is not imported for them, so a run that finds its entry starts with neither torch nor
    transformers). All are keyed by the folder's contents.
    """
    if precision in ONNX_KINDS:
        import platform
        from importlib.metadata import PackageNotFoundError, version

        try:
            ort = version("onnxruntime")
        except PackageNotFoundError:
            ort = None
        versions = [ENTRY_FORMAT, precision, ort, platform.machine()]
    else:
        import torch

        versions = [ENTRY_FORMAT, torch.__version__, torch.backends.cpu.get_cpu_capability(), precision]
    h = hashlib.sha256()
    h.update(json.dumps(versions).encode())
    h.update(content_stamp(model).encode())
    return (f"{precision}-" if precision in ONNX_KINDS else "aoti-") + h.hexdigest()[:32]


def find_entry(cache_dir: str, key: str, precision: str) -> Entry | None:
    """The complete entry ``key``, or None."""
    entry = Entry(os.path.join(cache_dir, key), precision)
    if all(os.path.isfile(p) for p in (entry.package, entry.tokenizer, os.path.join(entry.folder, "meta.json"))):
        return entry
    return None


def entry_meta(model: str, precision: str, tokenizer, net, specials, max_width: int) -> dict:
    """What a back-end needs besides the model file: labels, special tokens, pad id, width."""
    return {
        "format": ENTRY_FORMAT,
        "precision": precision,
        "labels": [net.config.id2label[i] for i in range(net.config.num_labels)],
        "pad_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0,
        "prefix": list(specials.prefix),
        "suffix": list(specials.suffix),
        "max_width": max_width,
        "model_type": getattr(net.config, "model_type", None),
        "model": os.path.abspath(model),
    }


def save_entry(cache_dir: str, key: str, precision: str, tokenizer, meta: dict, write_package: Callable[[str], None]) -> Entry:
    """Write an entry atomically: ``write_package(path)`` makes the model file in a temporary folder,
    which is renamed into place with the tokenizer and meta; two processes building the same entry
    do not clash, and a killed build leaves nothing half-written. Raises :class:`CacheError`."""
    import shutil
    import tempfile

    final = os.path.join(cache_dir, key)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        work = tempfile.mkdtemp(prefix=f".{key}.", dir=cache_dir)
    except OSError as exc:
        raise CacheError(f"cannot write to the cache {cache_dir}: {exc.strerror or exc}") from None
    try:
        write_package(os.path.join(work, os.path.basename(Entry(final, precision).package)))
        atomic_write(os.path.join(work, "tokenizer.json"), tokenizer.backend_tokenizer.to_str())
        atomic_write(os.path.join(work, "meta.json"), json.dumps(meta, indent=1))
        os.chmod(work, umask_mode(0o777))
        try:
            os.replace(work, final)
        except OSError:
            if find_entry(cache_dir, key, precision) is None:  # not another process's finished entry
                raise
        return Entry(final, precision)
    except (NerbatchError, CacheError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure means: run without the entry
        msg = str(exc).strip().splitlines()
        raise CacheError(f"{type(exc).__name__}: {msg[0] if msg else ''}"[:300]) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- model folders at URLs ----------------------------------------------------------------------------


def fetch_model(url: str, cache_dir: str | None = None) -> str:
    """The local copy of the model folder at ``url`` (``s3://b/model``), downloaded once into
    ``CACHE/models/KEY`` and loaded from there. ``KEY`` hashes the URL and each object's name, size
    and ETag (else its modification time): a changed model is fetched again, an unchanged one never.
    The copy is built in a temporary folder and renamed into place, so a killed download leaves
    nothing a later run would take for complete. Raises :class:`nerbatch.errors.ModelError`."""
    import shutil
    import tempfile

    from ..errors import ModelError
    from ..io.remote import canonical, get_files, listing

    try:
        found = {name: info for name, info in listing(url).items() if not any(p.startswith(".") for p in name.split("/"))}
    except OSError as exc:
        what = "model folder not found" if isinstance(exc, FileNotFoundError) else f"cannot list the model folder: {exc.strerror or exc}"
        raise ModelError(f"{url}: {what}", hint="check the URL and the storage credentials") from None
    if not found:
        raise ModelError(f"{url}: model folder not found (nothing under this URL)", hint="check the URL")
    if "config.json" not in found:
        raise ModelError(f"{url}: not a complete model folder (no config.json)",
                         hint="give the URL of the folder that holds config.json (a model being uploaded gets it last)")
    stamp = [canonical(url)] + [
        [name, info.get("size"), str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("mtime")
                                     or info.get("LastModified") or info.get("created") or "")]
        for name, info in sorted(found.items())
    ]
    root = os.path.join(cache_dir or default_cache_dir(), "models")
    final = os.path.join(root, hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:32])
    if os.path.isfile(os.path.join(final, "config.json")):
        return final
    try:
        os.makedirs(root, exist_ok=True)
        work = tempfile.mkdtemp(prefix=".download.", dir=root)
    except OSError as exc:
        raise ModelError(f"cannot write to the cache {root}: {exc.strerror or exc}") from None
    try:
        get_files(url, sorted(found), work)
        os.chmod(work, umask_mode(0o777))
        try:
            os.replace(work, final)
        except OSError:
            if not os.path.isfile(os.path.join(final, "config.json")):  # not another process's finished copy
                raise
    except OSError as exc:
        raise ModelError(f"{url}: cannot download the model folder: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final
