"""Compiled CPU models (AOTInductor): built once per model folder, precision and CPU, then a fast start.

Why: on the CPU, ``nerbatch tag`` spent about 3.5 s of every run importing transformers' model
code and building the module, and eager PyTorch runs each layer as separate kernels. A compiled
package fixes both: ``torch.export`` traces the model (dynamic batch and sequence axes),
AOTInductor turns it into a shared library with fused kernels for this CPU, and later runs load it
with torch alone (about 0.1 s; transformers is not imported) and run it faster (fp32 about 1.15x,
bf16 about 1.3x, see BENCHMARKS.md).

A cache entry is a folder ``aoti-<key>`` under :func:`nerbatch.model.cache.default_cache_dir` with
``model.pt2`` (the package), ``tokenizer.json`` (the fast tokenizer exactly as transformers loaded
it) and ``meta.json`` (labels, special tokens, pad id). The key hashes the model folder's files
(names and contents, see :mod:`nerbatch.model.cache`), the precision, torch's version and the CPU's instruction set, so a changed
model, a torch upgrade or another machine type builds a new entry. Entries are written to a
temporary folder and renamed into place, so a killed build leaves nothing half-written and two
processes building the same entry do not clash.

Building needs a C++ compiler (``g++``/``c++``/``clang++`` or ``$CXX``) and takes about 15-25 s for
MiniLM on two cores; without one, or when anything in the build fails, the tagger says so once
and runs the model uncompiled (same tags up to float rounding).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import warnings
from typing import Sequence

from ..model import cache

__all__ = [
    "CompiledModel", "RawTokenizer", "CompileError", "COMPILE_PRECISIONS", "build", "compiler_available",
    "BackgroundBuild", "build_in_background", "build_running",
]

COMPILE_PRECISIONS = ("fp32", "bf16")
MAX_ROWS = 65536  # export bounds of the dynamic axes
MIN_WIDTH = 2


class CompileError(Exception):
    """Building a compiled package failed; the caller falls back to the eager model."""


def compiler_available() -> bool:
    """A C++ compiler that AOTInductor can call."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx) is not None
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


# -- running ------------------------------------------------------------------------------------


class CompiledModel:
    """A loaded AOTInductor package, called like the transformers model the tagger uses."""

    def __init__(self, package: str, meta: dict) -> None:
        import torch

        self.path = package
        self.meta = meta
        self.device = torch.device("cpu")
        try:  # the C++ loader directly: torch._inductor (and sympy) stay unimported
            loader = torch._C._aoti.AOTIModelPackageLoader(package, "model", False, 1, -1)
            self._run = loader.boxed_run
        except (AttributeError, TypeError):  # a torch without that binding
            from torch._inductor import aoti_load_package

            fn = aoti_load_package(package)
            self._run = lambda args: fn(*args)

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        """int64 ``(rows, width)`` tensors -> logits ``(rows, width, labels)``; ``token_type_ids``
        (casing ids) for a package exported with them (zeros when not given)."""
        import torch

        typed = bool(self.meta.get("token_types"))
        if token_type_ids is not None and not typed:
            raise CompileError("the compiled model was built without token type (casing) ids")
        if typed and token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        rows, width = input_ids.shape
        if width < MIN_WIDTH:  # exported with seq >= 2: add a masked pad column
            pad = torch.zeros((rows, MIN_WIDTH - width), dtype=input_ids.dtype)
            input_ids = torch.cat([input_ids, pad + self.meta["pad_id"]], 1)
            attention_mask = torch.cat([attention_mask, pad], 1)
            if typed:
                token_type_ids = torch.cat([token_type_ids, pad], 1)
        if rows > MAX_ROWS:
            parts = [
                self(input_ids[i : i + MAX_ROWS], attention_mask[i : i + MAX_ROWS],
                     token_type_ids[i : i + MAX_ROWS] if typed else None)
                for i in range(0, rows, MAX_ROWS)
            ]
            return torch.cat(parts)[:, :width]
        args = [input_ids.contiguous(), attention_mask.contiguous()]
        if typed:
            args.append(token_type_ids.contiguous())
        out = self._run(args)
        logits = out[0] if isinstance(out, (list, tuple)) else out
        return logits[:, :width]

    def __repr__(self) -> str:
        return f"CompiledModel({self.meta.get('precision')}, {self.path})"


class _Batch:
    def __init__(self, encodings) -> None:
        self._enc = encodings
        self._ids: list[list[int]] | None = None

    def __getitem__(self, key: str):
        if key != "input_ids":
            raise KeyError(key)
        if self._ids is None:  # once: Encoding.ids builds a new list on every access
            self._ids = [e.ids for e in self._enc]
        return self._ids

    def word_ids(self, row: int):
        return self._enc[row].word_ids


class RawTokenizer:
    """The Rust tokenizer behind a transformers fast tokenizer, with the part of its call interface
    that :func:`nerbatch.tagging.align.word_pieces` uses (batches of pre-split sentences)."""

    is_fast = True

    def __init__(self, path: str, pad_token_id: int | None) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(path)
        self._tok.no_truncation()
        self._tok.no_padding()
        self.pad_token_id = pad_token_id

    @classmethod
    def of(cls, tokenizer) -> "RawTokenizer":
        """The Rust tokenizer behind a transformers fast tokenizer, set to give the ids that
        :func:`nerbatch.tagging.align.word_pieces` gets from the transformers one (special tokens in the
        text split or not as it splits them)."""
        raw = cls.__new__(cls)
        raw._tok = copy.deepcopy(tokenizer.backend_tokenizer)
        raw._tok.no_truncation()
        raw._tok.no_padding()
        raw._tok.encode_special_tokens = bool(getattr(tokenizer, "split_special_tokens", False))
        raw.pad_token_id = tokenizer.pad_token_id
        return raw

    @property
    def split_special_tokens(self) -> bool:
        """Whether special-token text in the words ("[SEP]") is split like any text (as transformers names it)."""
        return self._tok.encode_special_tokens

    def __getstate__(self) -> dict:  # (a tokenizers.Tokenizer pickles as its JSON, which leaves that setting out)
        return {"json": self._tok.to_str(), "pad_token_id": self.pad_token_id, "split": self._tok.encode_special_tokens}

    def __setstate__(self, state: dict) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_str(state["json"])
        self._tok.no_truncation()
        self._tok.no_padding()
        self._tok.encode_special_tokens = state["split"]
        self.pad_token_id = state["pad_token_id"]

    @property
    def backend_tokenizer(self):
        """The ``tokenizers.Tokenizer`` (as transformers' fast tokenizers name it)."""
        return self._tok

    def __call__(self, batch: Sequence[Sequence[str]], is_split_into_words: bool = True, add_special_tokens: bool = True) -> _Batch:
        if not is_split_into_words or not batch or isinstance(batch[0], str):
            raise TypeError("RawTokenizer takes a batch of pre-split sentences")
        return _Batch(self._tok.encode_batch([list(s) for s in batch], is_pretokenized=True, add_special_tokens=add_special_tokens))


# -- building -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet():
    """Compiler and exporter chatter off stdout (which may be the output stream) and stderr."""
    from .int8 import quiet_logging

    with quiet_logging("torch", "torch._inductor", "torch._dynamo", "torch.export", "torch.fx"), \
            contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def build(
    model: str, precision: str, tokenizer, net, specials, cache_dir: str, max_width: int = 512, token_types: bool = False
) -> cache.Entry:
    """Export + AOTInductor-compile ``net`` (a loaded transformers model) into the cache.

    Raises :class:`CompileError` on any failure (no compiler, an op the exporter cannot trace, a
    full disk); nothing is left behind then.
    """
    import torch

    if precision not in COMPILE_PRECISIONS:
        raise CompileError(f"precision {precision} is not compiled")
    if not compiler_available():
        raise CompileError("no C++ compiler found (g++, c++, clang++ or $CXX)")
    if any(p.device.type != "cpu" for p in net.parameters()):
        raise CompileError("compiled models run on the CPU")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
    net = net.eval().to(dtype)

    def write(path: str) -> None:
        from .int8 import LogitsOnly

        args, inputs = LogitsOnly.examples(3, token_types)
        batch = torch.export.Dim("batch", min=1, max=MAX_ROWS)
        seq = torch.export.Dim("seq", min=MIN_WIDTH, max=max_width)
        with _quiet():
            program = torch.export.export(
                LogitsOnly.wrap(net, token_types).eval(), args,
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs},
            )
            from torch._inductor import aoti_compile_and_package

            aoti_compile_and_package(program, package_path=path)

    meta = {**cache.entry_meta(model, precision, tokenizer, net, specials, max_width), "torch": torch.__version__,
            "token_types": token_types}
    try:
        return cache.save_entry(cache_dir, cache.entry_key(model, precision), precision, tokenizer, meta, write)
    except cache.CacheError as exc:
        raise CompileError(str(exc)) from None


# -- building in the background -------------------------------------------------------------------
#
# A first run must not wait for the compiler (15-60 s on two cores): the tagger starts with the
# eager model while a separate process (its own session, lowest CPU priority, so it takes only
# cores the tagging leaves idle and holds no GIL of ours) builds the entry; the tagger swaps the
# compiled model in at the next block once the entry is there (:class:`BackgroundBuild`), and a run
# that ends first leaves the build running for the next one. One build per entry at a time: the
# builder holds a lock file in the cache folder.


def _lock_path(cache_dir: str, key: str) -> str:
    return os.path.join(cache_dir, f".{key}.building")


def log_path(cache_dir: str, key: str) -> str:
    """Where a background build writes its errors."""
    return os.path.join(cache_dir, f".{key}.build.log")


def build_running(cache_dir: str, key: str) -> bool:
    """Whether a process holds the build lock of entry ``key``."""
    import fcntl

    try:
        fd = os.open(_lock_path(cache_dir, key), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


class BackgroundBuild:
    """A build of entry ``key`` in another process; :meth:`ready` is the entry once it exists."""

    def __init__(self, cache_dir: str, key: str, precision: str, token_types: bool, process=None) -> None:
        self.cache_dir, self.key, self.precision, self.process = cache_dir, key, precision, process
        self.token_types = token_types

    def ready(self) -> cache.Entry | None:
        return cache.find_entry(self.cache_dir, self.key, self.precision)

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return build_running(self.cache_dir, self.key)

    def wait(self, timeout: float | None = None) -> cache.Entry | None:
        """Wait for the build (tests, benchmarks); the entry, or None when it failed."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while self.running() and (end is None or time.monotonic() < end):
            time.sleep(0.2)
        return self.ready()


def build_in_background(model: str, precision: str, cache_dir: str, max_width: int, token_types: bool) -> BackgroundBuild:
    """Start (or join) the build of ``model``'s entry in a detached low-priority process."""
    import fcntl
    import subprocess
    import sys

    key = cache.entry_key(model, precision)
    os.makedirs(cache_dir, exist_ok=True)
    # the lock is taken here and handed to the builder, so a second run that starts before the
    # builder is up joins this build instead of starting its own
    fd = os.open(_lock_path(cache_dir, key), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return BackgroundBuild(cache_dir, key, precision, token_types)  # another process builds it
        args = [sys.executable, "-m", "nerbatch.tagging.compiled", os.path.abspath(model), precision, cache_dir, str(max_width),
                f"--lock-fd={fd}"]
        if token_types:
            args.append("--token-types")
        with open(log_path(cache_dir, key), "wb") as log:  # the builder's errors, if any, for a look later
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                start_new_session=True, pass_fds=(fd,),
            )
    finally:
        os.close(fd)  # the builder holds the lock from here on
    return BackgroundBuild(cache_dir, key, precision, token_types, process)


BUILD_NICE_ENV = "NERBATCH_BUILD_NICE"  # the background build's nice value, 0-19 (default 19, the lowest priority)


def _lowest_priority() -> None:
    """Nice 19 (or ``$NERBATCH_BUILD_NICE``, for a machine so busy that a nice-19 build would never
    finish), for the process and (Linux autogroups: nice counts only within a session) its session."""
    try:
        nice = min(19, max(0, int(os.environ.get(BUILD_NICE_ENV, "19"))))
    except ValueError:
        nice = 19
    with contextlib.suppress(OSError):
        os.nice(nice)
    with contextlib.suppress(OSError), open("/proc/self/autogroup", "w") as fh:
        fh.write(str(nice))


def build_main(argv: list[str]) -> int:
    """``python -m nerbatch.tagging.compiled MODEL PRECISION CACHE_DIR MAX_WIDTH [--token-types] [--lock-fd=N]``:
    build one entry (``--lock-fd``: the build lock, already held, inherited from the parent)."""
    import fcntl
    import sys
    import time

    from ..model.loading import load_model
    from .align import Specials

    model, precision, cache_dir, width = argv[0], argv[1], argv[2], int(argv[3])
    token_types = "--token-types" in argv[4:]
    handed = [int(a.split("=", 1)[1]) for a in argv[4:] if a.startswith("--lock-fd=")]
    _lowest_priority()
    key = cache.entry_key(model, precision)
    os.makedirs(cache_dir, exist_ok=True)
    if handed:  # locked by the process that started this one
        fd = handed[0]
    else:
        fd = os.open(_lock_path(cache_dir, key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return 0  # another process builds it
    try:
        if cache.find_entry(cache_dir, key, precision) is not None:
            return 0
        delay = float(os.environ.get("NERBATCH_TEST_BUILD_DELAY", "0") or 0)  # test hook: a slow build
        if delay:
            time.sleep(delay)
        tokenizer, net = load_model(model)
        build(model, precision, tokenizer, net, Specials.of(tokenizer), cache_dir, max_width=width, token_types=token_types)
        return 0
    except CompileError as exc:
        print(f"nerbatch: the compiled model was not built: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(fd)  # (the lock file stays: unlinking it would let a third process lock a new one meanwhile)


if __name__ == "__main__":
    import sys

    sys.exit(build_main(sys.argv[1:]))
