"""Precision by measurement: what ``--precision auto`` (``nerbatch tag``) and ``--bf16`` auto
(``nerbatch train``) resolve to on this machine.

Which precision is fastest depends on the CPU far more than on anything nerbatch can guess from a
flag: bf16 matmuls run 6x *faster* than fp32 on a Xeon with AMX, about 3x faster on a Zen 4 with
``avx512_bf16``, and several times *slower* on a Zen 3 with AVX2 only, where they are emulated;
int8 (ONNX Runtime) gains more where there is VNNI. So :func:`measure` times the model's own matrix
shapes in each candidate precision, once per machine, and :func:`choose` takes the fastest whose
F1 cost is negligible.

**The F1 bound.** A precision is a candidate for ``auto`` only when its measured F1 cost against
fp32 is at most :data:`F1_BOUND` = 0.1 F1 (CoNLL-2003, conlleval rules). Evidence (BENCHMARKS.md,
one ``make bench`` run, CoNLL-2003 test, the same MiniLM NER model): fp32 82.04; bf16 81.97
compiled / 81.95 eager (-0.07 / -0.09); int8 (ONNX Runtime, per-channel dynamic) 82.09 whole
process / 81.99 in-process (+0.05 / -0.05). Both are within the bound (:data:`F1_COST`, the worst
of each). fp16 has no CPU kernels and is not measured here.

**The measurement** (:func:`measure`): the three matrix products of a transformer layer at the
model's own width (``hidden x hidden``, ``hidden x intermediate``, ``intermediate x hidden``, with
``hidden_size``/``intermediate_size`` read from the model's ``config.json``), chained on a block of
rows, in each precision:

* fp32 and bf16 through torch (``torch.nn.functional.linear`` under ``inference_mode``: the
  kernels the eager and compiled back-ends call for a Linear layer);
* int8 through what ``--precision int8`` really runs, ONNX Runtime: the same three MatMuls as the
  graph ``quantize_dynamic`` makes of each MatMul of :mod:`nerbatch.tagging.int8`'s model (int8
  weights per output column; ``DynamicQuantizeLinear`` of the activations at run time,
  ``MatMulInteger``, ``Cast``, ``Mul`` by the scales), in a session with the int8 back-end's
  settings, so the quantize/dequantize steps around each product, which decide whether int8 pays
  off, are timed too. The graph is written directly (:func:`int8_gemm_graph`; a test checks it
  against ``quantize_dynamic``'s), which saves importing onnx (2 s here). torch's dynamic quantized
  Linear would time other kernels (FBGEMM/oneDNN), not the ones the int8 back-end runs.

It is strictly time-bounded: each precision gets :data:`DEADLINE` seconds; its block of rows starts
at 16 and doubles only while one call takes under a sixteenth of that, up to about 1 GFLOP a call
(at most 2,048 rows); a precision that runs at under half of fp32's rate at 64 rows or more is
stopped there (it cannot win), and one not started within :data:`TOTAL_DEADLINE` (2 s) is skipped.
Rates are compared at equal shapes. The whole measurement takes about 1-1.5 s on a quiet machine
(plus importing torch, which any fp32/bf16 run does anyway, and onnxruntime), once: the
result is cached as a small JSON file under the cache folder (``precision/``), keyed by the CPU
(model name and a digest of its flags), the torch and onnxruntime versions, the threads and the
model's width, and read back by every later run; a damaged or foreign file is measured again. One
taken while other work held every CPU (1-minute load average above the CPU count) says more about
that work than about the precisions (torch's spinning thread pool suffers far more from it than
ONNX Runtime's): the run takes fp32, and the first run that finds the machine quiet measures again.
Reading it back imports nothing heavy (so a cached int8 run still starts without torch).

**The choice** (:func:`choose`): the fastest candidate that beats fp32 by :data:`MARGIN` (1.15x)
at equal shapes, else fp32. int8 is a candidate only when onnxruntime (with onnx and onnxscript,
which the int8 export needs) is installed, ``--compile`` was not asked for (int8 is never
compiled), and the CPU has int8 dot-product instructions (VNNI or AMX-INT8, as the machine where
its F1 was measured had): without them ONNX Runtime's uint8 x int8 kernels saturate
(:func:`int8_exact`), so int8 is measured and reported there but not chosen. On a GPU nothing is measured, by policy: bf16 where the GPU supports it, else fp16
(tensor cores make either several times faster than fp32 on any CUDA GPU nerbatch targets; their F1
cost on GPU is not measured here). ``--precision fp32`` (or any explicit precision) is never
overridden: fp32 stays one option away for byte-identical output.

Test hook: ``NERBATCH_PRECISION_RATES='{"fp32": 100, "bf16": 300}'`` replaces the measurement (the
rates are taken as measured at equal shapes; nothing is timed or cached). ``'{"fp32": 1}'`` makes
``auto`` fp32, for a test suite whose results must not depend on the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable

from ..model.settings import read_json

__all__ = [
    "AUTO", "F1_BOUND", "F1_COST", "MARGIN", "DEADLINE", "RATES_ENV", "Measurement", "PrecisionChoice",
    "machine_key", "model_shape", "measure", "measured", "choose", "resolve_precision", "bf16_speedup",
    "int8_available", "int8_exact", "int8_gemm_graph", "ort_session", "INT8_DOT_FLAGS",
]

AUTO = "auto"
F1_BOUND = 0.1  # F1 points on CoNLL-2003 a precision may cost against fp32 to be chosen automatically
F1_COST = {"fp32": 0.0, "bf16": 0.09, "int8": 0.05}  # worst measured |F1 - fp32 F1| (module docstring)
MARGIN = 1.15  # a precision must beat fp32 by this factor to be chosen
DEADLINE = 0.3  # seconds of timing per precision
TOTAL_DEADLINE = 2.0  # seconds for the whole measurement (torch's import aside): a precision not started by then is skipped
FORMAT = 1  # bump when the measurement changes: older cached files are measured again
RATES_ENV = "NERBATCH_PRECISION_RATES"
MIN_ROWS = 16
MAX_ROWS = 2048
CALL_FLOPS = 1e9  # the largest block of rows: about this many FLOPs per call
STARVED_GFLOPS = 2.0  # fp32 slower than this: the process hardly got a CPU (one AVX2 core does 30+)


@dataclass(frozen=True)
class Measurement:
    """Matmul rates of this machine on one model width: GFLOP/s per precision at the largest block of
    rows each reached, and the ratio against fp32 at the same rows."""

    rates: dict[str, float]
    ratios: dict[str, float]
    rows: dict[str, int]
    hidden: int
    intermediate: int
    threads: int
    seconds: float  # how long the timing took (0 for the test hook)
    source: str = "measured"  # "measured" or the test hook's name
    skipped: dict[str, str] = field(default_factory=dict)  # precision -> why it was not timed
    load: float = 0.0  # the 1-minute load average when it was taken
    cpus: int = 0  # the CPUs this process could run on then

    @property
    def busy(self) -> bool:
        """Taken while other work held every CPU (the load average said so, or fp32 ran implausibly
        slowly): kept, but not trusted, and measured again once the machine is quiet."""
        starved = self.source == "measured" and self.rates.get("fp32", 0.0) < STARVED_GFLOPS
        return starved or _busy(self.load, self.cpus)


@dataclass(frozen=True)
class PrecisionChoice:
    """What a run's precision resolved to, and why (``reason`` is what the summary line shows)."""

    precision: str
    requested: str
    reason: str
    measurement: Measurement | None = None
    cached: bool = False  # the measurement was read back from the cache

    @property
    def rates(self) -> dict[str, float]:
        return dict(self.measurement.rates) if self.measurement else {}

    @property
    def ratios(self) -> dict[str, float]:
        return dict(self.measurement.ratios) if self.measurement else {}

    def as_dict(self) -> dict:
        return asdict(self)


# -- keys: this machine, this software, this model ---------------------------------------------------


def _cpu_info() -> tuple[str, str]:
    """The CPU's model name and its feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    name, flags = "", ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not name:
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if name and flags:
                    break
    except OSError:
        pass
    return name, flags


def _cpu() -> tuple[str, str]:
    """The CPU's model name and a digest of its feature flags, else what platform says."""
    import platform

    name, flags = _cpu_info()
    return name or platform.processor() or platform.machine(), hashlib.sha256(flags.encode()).hexdigest()[:12]


INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # x86 int8 dot-product instructions


def int8_exact() -> bool:
    """Whether ONNX Runtime's int8 products are exact here: x86 CPUs with VNNI or AMX-INT8, as on
    the machine where int8's F1 cost was measured. Without them (AVX2 only) its uint8 x int8 kernel
    sums pairs of products in int16 and saturates (``vpmaddubsw``): on a Zen 3 one 64 x 256 product
    came out 14% off fp32 against 0.9% for exact int8, so int8's F1 evidence does not hold there."""
    return any(f in _cpu_info()[1].split() for f in INT8_DOT_FLAGS)


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def _threads_key(threads: int | None) -> str:
    """The threads a run will use, for the key: the option, else "default" with what torch's default
    depends on (the CPUs this process may run on, ``OMP_NUM_THREADS``), read without importing torch."""
    if threads:
        return str(threads)
    return f"default/{_cpus()}/{os.environ.get('OMP_NUM_THREADS', '').strip()}"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def _busy(load: float, cpus: int) -> bool:
    return cpus > 0 and load > cpus


def int8_available() -> bool:
    """Whether ``--precision int8`` can run here: onnxruntime, onnx and onnxscript importable."""
    from importlib.util import find_spec

    return all(find_spec(m) is not None for m in ("onnxruntime", "onnx", "onnxscript"))


def machine_key(hidden: int, intermediate: int, threads: int | None, int8: bool) -> dict:
    """What a measurement depends on (its cache key)."""
    name, flags = _cpu()
    return {
        "format": FORMAT,
        "cpu": name,
        "cpu_flags": flags,
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime") if int8 else None,
        "threads": _threads_key(threads),
        "hidden": hidden,
        "intermediate": intermediate,
    }


def _config(model: str) -> dict:
    """The model's config.json: from the folder, else (a hub id) from the local Hugging Face cache."""
    path = os.path.join(model, "config.json")
    if not os.path.isdir(model):
        try:
            from huggingface_hub import try_to_load_from_cache

            found = try_to_load_from_cache(model, "config.json")
            path = found if isinstance(found, str) else ""
        except Exception:  # noqa: BLE001 - no hub library, or an id it refuses: defaults
            path = ""
    return read_json(path)


def model_shape(model: str) -> tuple[int, int]:
    """(hidden, intermediate) width of a model, from its config (BERT-base's 768/3072 when unknown)."""
    cfg = _config(model)

    def first(*names, default):
        for n in names:
            v = cfg.get(n)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return default

    hidden = first("hidden_size", "dim", "d_model", default=768)
    return hidden, first("intermediate_size", "hidden_dim", "ffn_dim", "d_ff", default=4 * hidden)


# -- the measurement ------------------------------------------------------------------------------------


def _once(run: Callable[[int], object], rows: int) -> float:
    t0 = time.perf_counter()
    run(rows)
    return time.perf_counter() - t0


def _best(run: Callable[[int], object], rows: int, budget: float, calls: int = 200) -> float:
    """The shortest of a few calls of ``run(rows)`` within ``budget`` seconds (at least one)."""
    t_end = time.perf_counter() + budget
    best = _once(run, rows)
    for _ in range(calls - 1):
        if time.perf_counter() + best > t_end:
            break
        best = min(best, _once(run, rows))
    return best


def _timed_rate(run: Callable[[int], object], flops_per_row: float, max_rows: int, deadline: float,
                reference: dict[int, float] | None = None) -> tuple[float, int, dict[int, float]]:
    """GFLOP/s of ``run(rows)`` at the largest block of rows reached within ``deadline`` seconds
    (best of the calls at that size), the rows, and the rate of the first call at each size tried.

    The block starts at :data:`MIN_ROWS` rows and doubles while one call takes under a sixteenth of
    the deadline. ``reference``: fp32's first-call rates per size; a precision under half of it at
    64 rows or more stops there (clearly slower: three calls, not the whole deadline)."""
    rows = min(MIN_ROWS, max_rows)
    run(rows)  # warm-up, untimed: thread pools, kernel selection, first-touch of the buffers
    t_end = time.perf_counter() + deadline
    dt = _once(run, rows)
    seen = {rows: flops_per_row * rows / dt / 1e9}
    slower = False
    while rows < max_rows and dt < deadline / 16 and time.perf_counter() + 2 * dt < t_end:
        if reference and rows >= 64 and rows in reference and seen[rows] < 0.5 * reference[rows]:
            slower = True
            break
        rows = min(max_rows, rows * 2)
        dt = _once(run, rows)
        seen[rows] = flops_per_row * rows / dt / 1e9
    left = t_end - time.perf_counter()
    best = min(dt, _best(run, rows, left, calls=3 if slower else 200)) if left > dt else dt
    return flops_per_row * rows / best / 1e9, rows, seen


def _torch_runner(dtype_name: str, hidden: int, inter: int, max_rows: int):
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return (torch.randn(*shape, generator=g) * 0.05).to(dtype)

    x = rnd(max_rows, hidden)
    w_hh, w_up, w_down = rnd(hidden, hidden), rnd(inter, hidden), rnd(hidden, inter)
    linear = torch.nn.functional.linear

    def run(rows: int):
        with torch.inference_mode():
            return linear(linear(linear(x[:rows], w_hh), w_up), w_down)

    return run


# A minimal ONNX writer: the int8 graph below is a dozen nodes, and writing its protobuf bytes here
# saves importing the onnx package (about 2 s on a 2-core machine) and running quantize_dynamic on
# the weights (0.4 s); tests/model/test_precision.py checks that onnx reads it back as the graph
# quantize_dynamic makes (same operators, in the same order).


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _f_int(field_no: int, n: int) -> bytes:
    return _varint(field_no << 3) + _varint(n)


def _f_bytes(field_no: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _varint(field_no << 3 | 2) + _varint(len(raw)) + raw


_FLOAT, _UINT8, _INT8, _INT32 = 1, 2, 3, 6  # onnx TensorProto.DataType


def _tensor(name: str, dtype: int, array) -> bytes:  # TensorProto: dims 1, data_type 2, name 8, raw_data 9
    return b"".join(_f_int(1, d) for d in array.shape) + _f_int(2, dtype) + _f_bytes(8, name) + _f_bytes(9, array.tobytes())


def _value_info(name: str, elem: int, dims: list) -> bytes:  # ValueInfoProto > TypeProto > Tensor > Shape
    shape = b"".join(_f_bytes(1, _f_bytes(2, d) if isinstance(d, str) else _f_int(1, d)) for d in dims)
    return _f_bytes(1, name) + _f_bytes(2, _f_bytes(1, _f_int(1, elem) + _f_bytes(2, shape)))


def _node(op: str, inputs: list[str], outputs: list[str], **ints: int) -> bytes:  # NodeProto; INT attributes
    attrs = b"".join(_f_bytes(5, _f_bytes(1, k) + _f_int(3, v) + _f_int(20, 2)) for k, v in ints.items())
    return b"".join(_f_bytes(1, i) for i in inputs) + b"".join(_f_bytes(2, o) for o in outputs) + _f_bytes(4, op) + attrs


def int8_gemm_graph(weights: list[tuple[str, object]], hidden: int) -> bytes:
    """ONNX bytes of ``x @ w1 @ w2 ...`` with int8 weights per output column and activations
    quantized at run time: the operators ``quantize_dynamic`` (per-channel, QInt8 weights) writes
    for each MatMul of :mod:`nerbatch.tagging.int8`'s model (DynamicQuantizeLinear, MatMulInteger,
    Cast, Mul by the product of the scales)."""
    import numpy as np

    nodes, inits = [], []
    x = "x"
    for k, (name, w) in enumerate(weights):
        scale = np.maximum(np.abs(w).max(axis=0), 1e-8).astype(np.float32) / 127.0
        q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
        inits += [_tensor(f"{name}_scale", _FLOAT, scale), _tensor(f"{name}_zero_point", _INT8, np.zeros(w.shape[1], np.int8)),
                  _tensor(f"{name}_quantized", _INT8, q)]
        out = "y" if k == len(weights) - 1 else f"h{k}"
        nodes += [
            _node("DynamicQuantizeLinear", [x], [f"{x}_quantized", f"{x}_scale", f"{x}_zero_point"]),
            _node("Mul", [f"{x}_scale", f"{name}_scale"], [f"{name}_scales"]),
            _node("MatMulInteger", [f"{x}_quantized", f"{name}_quantized", f"{x}_zero_point", f"{name}_zero_point"], [f"{out}_int32"]),
            _node("Cast", [f"{out}_int32"], [f"{out}_float"], to=_FLOAT),
            _node("Mul", [f"{out}_float", f"{name}_scales"], [out]),
        ]
        x = out
    out_width = weights[-1][1].shape[1]
    graph = (b"".join(_f_bytes(1, n) for n in nodes) + _f_bytes(2, "layer_gemms") + b"".join(_f_bytes(5, t) for t in inits)
             + _f_bytes(11, _value_info("x", _FLOAT, ["rows", hidden])) + _f_bytes(12, _value_info("y", _FLOAT, ["rows", out_width])))
    return _f_int(1, 8) + _f_bytes(8, _f_bytes(1, "") + _f_int(2, 17)) + _f_bytes(7, graph)  # IR 8, opset 17


def ort_session(path: str, threads: int | None):
    """An ONNX Runtime CPU session with the settings of :func:`nerbatch.tagging.int8.open_session` (no
    spinning, all graph optimisations, ``threads`` or its default, sequential), without importing
    onnx and onnxscript as that function does for the export (2-6 s here); a test checks they agree."""
    import onnxruntime as ort

    from .int8 import cpu_session

    return cpu_session(ort, path, threads)


def _int8_runner(hidden: int, inter: int, max_rows: int, threads: int | None):
    """The three products as the int8 graph of :func:`int8_gemm_graph`, in an ONNX Runtime session
    opened as the int8 back-end opens its own (:func:`ort_session`)."""
    import tempfile

    import numpy as np

    rng = np.random.default_rng(0)

    def rnd(*shape):
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    data = int8_gemm_graph([("w_hh", rnd(hidden, hidden)), ("w_up", rnd(hidden, inter)), ("w_down", rnd(inter, hidden))], hidden)
    with tempfile.TemporaryDirectory(prefix="nerbatch-precision-") as tmp:
        path = os.path.join(tmp, "gemms.int8.onnx")
        with open(path, "wb") as fh:
            fh.write(data)
        session = ort_session(path, threads)  # the model is in memory: the file may go
    x = rnd(max_rows, hidden)

    def run(rows: int):
        return session.run(["y"], {"x": x[:rows]})

    return run


def _hooked(hidden: int, inter: int, threads: int) -> Measurement | None:
    text = os.environ.get(RATES_ENV, "").strip()
    if not text:
        return None
    try:
        rates = {str(k): float(v) for k, v in json.loads(text).items()}
    except (ValueError, TypeError, AttributeError):
        raise ValueError(f"{RATES_ENV} must be a JSON object of GFLOP/s per precision, got {text!r}") from None
    if rates.get("fp32", 0) <= 0:
        raise ValueError(f"{RATES_ENV} needs a positive fp32 rate, got {text!r}")
    ratios = {p: r / rates["fp32"] for p, r in rates.items()}
    return Measurement(rates, ratios, {p: 0 for p in rates}, hidden, inter, threads, 0.0, source=RATES_ENV)


def measure(hidden: int, intermediate: int, *, threads: int | None = None, bf16: bool = True, int8: bool = True,
            deadline: float = DEADLINE) -> Measurement:
    """Time fp32 (and bf16, int8 where asked and possible) on these widths; see the module docstring."""
    hooked = _hooked(hidden, intermediate, threads or 0)
    if hooked is not None:
        return hooked
    load, cpus = _load(), _cpus()
    import torch  # not part of the measurement's time: every fp32/bf16 run imports it anyway

    t0 = time.perf_counter()
    flops_per_row = 2.0 * (hidden * hidden + 2 * hidden * intermediate)
    max_rows = MIN_ROWS
    while max_rows < MAX_ROWS and flops_per_row * max_rows * 2 <= CALL_FLOPS:
        max_rows *= 2
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)  # as the run will; else torch's default, as the run will have
    used = torch.get_num_threads()
    rates: dict[str, float] = {}
    ratios: dict[str, float] = {}
    rows: dict[str, int] = {}
    skipped: dict[str, str] = {}
    try:
        fp32_run = _torch_runner("fp32", hidden, intermediate, max_rows)
        fp32, rows["fp32"], ref = _timed_rate(fp32_run, flops_per_row, max_rows, deadline)
        rates["fp32"], ratios["fp32"] = fp32, 1.0
        at = {rows["fp32"]: fp32}  # fp32's best rate per block size
        others: list[tuple[str, Callable[[], Callable[[int], object]]]] = []
        if bf16:
            others.append(("bf16", lambda: _torch_runner("bf16", hidden, intermediate, max_rows)))
        if int8:
            others.append(("int8", lambda: _int8_runner(hidden, intermediate, max_rows, threads)))
        for name, make in others:
            if time.perf_counter() - t0 > TOTAL_DEADLINE - deadline:
                skipped[name] = "out of time (a busy machine?)"
                continue
            try:
                rate, n, _ = _timed_rate(make(), flops_per_row, max_rows, deadline, reference=ref)
            except Exception as exc:  # noqa: BLE001 - a precision this build cannot run is no candidate
                skipped[name] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                continue
            if n not in at:  # compare at equal shapes: fp32 again at this block size (a short best-of)
                at[n] = flops_per_row * n / _best(fp32_run, n, deadline / 3, calls=1 if n in ref else 200) / 1e9
                at[n] = max(at[n], ref.get(n, 0.0))
            rates[name], rows[name], ratios[name] = rate, n, rate / at[n]
    finally:
        torch.set_num_threads(saved)
    return Measurement(rates, ratios, rows, hidden, intermediate, used, time.perf_counter() - t0, skipped=skipped,
                       load=load, cpus=cpus)


# -- the cache -----------------------------------------------------------------------------------------


def _cache_path(key: dict, cache_dir: str | None) -> str:
    from ..model.cache import default_cache_dir

    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    return os.path.join(cache_dir or default_cache_dir(), "precision", f"{digest}.json")


def _read_cached(path: str, key: dict) -> Measurement | None:
    """The measurement in ``path`` if it is a complete one for ``key``; None otherwise (damaged,
    another key, another format: measured again and replaced)."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        m = data["measurement"]
        rates = {str(p): float(v) for p, v in m["rates"].items()}
        ratios = {str(p): float(v) for p, v in m["ratios"].items()}
        if rates.get("fp32", 0) <= 0 or set(ratios) != set(rates) or any(v <= 0 for v in (*rates.values(), *ratios.values())):
            return None
        return Measurement(
            rates=rates, ratios=ratios, rows={str(p): int(v) for p, v in m["rows"].items()},
            hidden=int(m["hidden"]), intermediate=int(m["intermediate"]), threads=int(m["threads"]),
            seconds=float(m["seconds"]), source=str(m.get("source", "measured")),
            skipped={str(p): str(v) for p, v in (m.get("skipped") or {}).items()},
            load=float(m.get("load", 0.0)), cpus=int(m.get("cpus", 0)),
        )
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def measured(model: str, threads: int | None = None, *, int8: bool | None = None, cache_dir: str | None = None,
             measure_fn: Callable[..., Measurement] | None = None) -> tuple[Measurement, bool]:
    """This machine's measurement for ``model``'s widths, from the cache or timed now and cached;
    and whether it came from the cache. ``measure_fn`` replaces :func:`measure` (tests)."""
    from ..io.atomic import atomic_write

    hidden, inter = model_shape(model)
    hooked = _hooked(hidden, inter, threads or 0) if measure_fn is None else None
    if hooked is not None:
        return hooked, False  # the test hook: nothing timed, nothing cached
    int8 = int8_available() if int8 is None else int8
    key = machine_key(hidden, inter, threads, int8)
    path = _cache_path(key, cache_dir)
    found = _read_cached(path, key)
    if found is not None and (not found.busy or _busy(_load(), _cpus())):
        return found, True  # (one taken on a busy machine is taken again once it is quiet)
    result = (measure_fn or measure)(hidden, inter, threads=threads, int8=int8)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps({"key": key, "measurement": asdict(result)}, indent=1))
    except OSError:
        pass  # a read-only cache: measured again next time
    return result, False


# -- the choice -----------------------------------------------------------------------------------------


def _x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 2 else f"{ratio:.2f}x"


def choose(m: Measurement, candidates: tuple[str, ...] = ("bf16", "int8"),
           excluded: dict[str, str] | None = None) -> tuple[str, str]:
    """(precision, reason) from a measurement: the fastest candidate within the F1 bound that beats
    fp32 by :data:`MARGIN`, else fp32. ``excluded``: measured precisions that are no candidate here,
    and why (named in the reason when fp32 is kept)."""
    ok = [p for p in candidates if p in m.ratios and F1_COST.get(p, 1e9) <= F1_BOUND]
    best = max(ok, key=lambda p: m.ratios[p], default=None)
    if best is not None and m.ratios[best] >= MARGIN:
        return best, f"{best} (auto: {_x(m.ratios[best])} fp32 here)"
    others = [f"{p} {_x(m.ratios[p])}" for p in ok]
    others += [f"{p} {_x(m.ratios[p])} but {why}" for p, why in (excluded or {}).items() if p in m.ratios]
    return "fp32", f"fp32 (auto: nothing beats it by {MARGIN:.2f}x here: {', '.join(others) or 'nothing else measured'})"


def _gpu(device: str) -> bool:
    """Whether ``device`` is (or ``auto`` finds) a CUDA GPU; torch is imported only where a GPU
    driver is present, so a CPU-only machine resolves ``auto`` without it."""
    if device.startswith("cuda"):
        return True
    if device != "auto":
        return False
    if "torch" not in sys.modules and not any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_precision(model: str, options, *, cache_dir: str | None = None,
                      measure_fn: Callable[..., Measurement] | None = None):
    """``(options, choice)``: ``options`` (a :class:`~nerbatch.tagging.tagger.TaggerOptions`) with ``auto``
    replaced by this machine's choice for ``model`` (unchanged when a precision was given), and the
    :class:`PrecisionChoice` saying why."""
    if options.precision != AUTO:
        return options, PrecisionChoice(options.precision, options.precision, options.precision)
    if _gpu(options.device):
        import torch

        if not torch.cuda.is_available():  # --device cuda without one: loading the model says so
            return replace(options, precision="fp32"), PrecisionChoice("fp32", AUTO, "fp32 (auto: no CUDA device)")
        dev = torch.device(options.device if options.device != "auto" else "cuda")
        with torch.cuda.device(dev):
            bf16 = bool(torch.cuda.is_bf16_supported())
        p = "bf16" if bf16 else "fp16"
        why = f"{p} (auto: GPU{' with bf16' if bf16 else ' without bf16'}, by policy, not measured)"
        return replace(options, precision=p), PrecisionChoice(p, AUTO, why)
    int8 = int8_available() and options.compile is not True  # int8 is never compiled
    m, cached = measured(model, options.threads, int8=int8, cache_dir=cache_dir, measure_fn=measure_fn)
    exact = int8 and int8_exact()
    excluded = {"int8": "no VNNI (int8 products saturate)"} if int8 and not exact else {}
    p, why = choose(m, ("bf16", "int8") if exact else ("bf16",), excluded)
    if m.busy:  # other work held every CPU: the rates say more about it than about the precisions
        p, why = "fp32", (f"fp32 (auto: measured while the machine was busy, load {m.load:.1f} on {m.cpus} CPUs, "
                          f"fp32 at {m.rates.get('fp32', 0):.1f} GFLOP/s; measured again once quiet)")
    return replace(options, precision=p), PrecisionChoice(p, AUTO, why, m, cached)


def bf16_speedup(model: str, threads: int | None = None, *, cache_dir: str | None = None,
                 measure_fn: Callable[..., Measurement] | None = None) -> float:
    """bf16's measured matmul rate over fp32's on ``model``'s widths (CPU; cached as for ``tag``);
    0 when the measurement was taken on a busy machine (not trusted: fp32, as ``auto`` does)."""
    m, _ = measured(model, threads, cache_dir=cache_dir, measure_fn=measure_fn)
    return 0.0 if m.busy else m.ratios.get("bf16", 0.0)
