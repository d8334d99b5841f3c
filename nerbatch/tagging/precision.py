"""Precision by measurement: what ``--precision auto`` (``nerbatch tag``) and ``--bf16`` auto
(``nerbatch train``) resolve to on this machine.

Which precision is fastest depends on the CPU far more than on anything nerbatch can guess from a
flag: bf16 matmuls run 6x *faster* than fp32 on a Xeon with AMX, about 3x faster on a Zen 4 with
``avx512_bf16``, and several times *slower* on a Zen 3 with AVX2 only, where they are emulated;
int8 (ONNX Runtime) gains more where there is VNNI. So :func:`measure` times the model's own matrix
shapes in each candidate precision, once per machine, and :func:`choose` takes the fastest whose
F1 cost is negligible.

**The F1 bound.** A precision is a candidate for ``auto`` only when its F1 cost against fp32 is
at most :data:`F1_BOUND` = 0.1 F1 (conlleval rules). The cost is the model's own where training
recorded it: ``nerbatch train`` tags its dev set in fp32 and in each candidate precision this
machine can run, through the back-ends ``tag`` runs (:func:`nerbatch.training.precision_check.dev_f1_by_precision`), and writes the
F1 of each into the model folder's ``nerbatch.json`` (``precision_f1``); the cost is then
``|F1(p) - F1(fp32)|`` on that dev set. A model without that record (trained before, elsewhere, or
a hub id) falls back to :data:`F1_COST`, measured on one MiniLM CoNLL-2003 model (BENCHMARKS.md:
fp32 82.04; bf16 81.97 compiled / 81.95 eager; int8 82.09 whole process / 81.99 in-process), and
the reason shown says so. fp16 has no CPU kernels and is not measured here.

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

The products are timed in **short interleaved trials**: a block of rows is sized on fp32 (from 16
rows, doubling while one call takes under a sixteenth of :data:`DEADLINE`, up to about 1 GFLOP a
call, at most 2,048 rows), each precision is warmed up at that size, and then the precisions take
turns (fp32 bf16 int8, bf16 int8 fp32, ...), :data:`TRIAL_CALLS` calls each, for at least
:data:`MIN_TRIALS` turns and :data:`DEADLINE` seconds per precision; each precision's time is the
shortest call it made. Other work on the machine slows whichever precision runs while it runs, so
taking turns spreads it over all of them, and the shortest call is the one least disturbed: the
ratios hold on a busy machine, and no load average is consulted (it counts any other process, even
one at the lowest priority). A precision at under half of fp32's speed after its first turns stops
taking turns (it cannot win); the whole measurement stops at :data:`TOTAL_DEADLINE` however busy
the machine. It takes about 1-1.5 s (plus importing torch, which any fp32/bf16 run does anyway,
and onnxruntime), once: the result is cached as a small JSON file under the cache folder
(``precision/``), keyed by the CPU (model name and a digest of its flags), the torch and
onnxruntime versions, the threads and the model's width, and read back by every later run; a
damaged or foreign file is measured again. Reading it back imports nothing heavy (so a cached int8
run still starts without torch).

**The choice** (:func:`choose`): the fastest candidate within the F1 bound that beats fp32 by
:data:`MARGIN` (1.15x) at equal shapes, else fp32. int8 is a candidate only when onnxruntime (with onnx and onnxscript,
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
    "AUTO", "F1_BOUND", "F1_COST", "F1_RECORD", "MARGIN", "DEADLINE", "RATES_ENV", "Measurement", "PrecisionChoice",
    "machine_key", "model_shape", "measure", "measured", "interleaved", "choose", "resolve_precision", "bf16_speedup",
    "recorded_f1",
    "int8_available", "int8_exact", "int8_gemm_graph", "ort_session", "INT8_DOT_FLAGS",
]

AUTO = "auto"
F1_BOUND = 0.1  # F1 points a precision may cost against fp32 to be chosen automatically
# worst |F1 - fp32 F1| measured on the reference model (module docstring): for models without their own record
F1_COST = {"fp32": 0.0, "bf16": 0.09, "int8": 0.05}
F1_RECORD = "precision_f1"  # nerbatch.json's key for the dev F1 per precision (dev_f1_by_precision)
MARGIN = 1.15  # a precision must beat fp32 by this factor to be chosen
DEADLINE = 0.3  # seconds of trials per precision
MIN_TRIALS = 5  # turns each precision takes at least
TRIAL_CALLS = 2  # calls per turn (the first may find the caches holding another precision's weights)
TOTAL_DEADLINE = 3.0  # seconds for the whole measurement (torch's import aside), however busy the machine
FORMAT = 2  # bump when the measurement changes: older cached files are measured again
RATES_ENV = "NERBATCH_PRECISION_RATES"
MIN_ROWS = 16
MAX_ROWS = 2048
CALL_FLOPS = 1e9  # the largest block of rows: about this many FLOPs per call


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
    trials: dict[str, int] = field(default_factory=dict)  # precision -> turns it took


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


def _block_rows(run: Callable[[int], object], max_rows: int, deadline: float) -> int:
    """The block of rows the trials use: from :data:`MIN_ROWS`, doubled while one call of ``run``
    (fp32) takes under a sixteenth of ``deadline``, at most ``max_rows``."""
    rows = min(MIN_ROWS, max_rows)
    run(rows)  # warm-up, untimed: thread pools, kernel selection, first-touch of the buffers
    dt = _once(run, rows)
    while rows < max_rows and dt < deadline / 16:
        rows = min(max_rows, rows * 2)
        dt = _once(run, rows)
    return rows


def interleaved(runners: dict[str, Callable[[int], object]], rows: int, deadline: float = DEADLINE,
                stop: float | None = None) -> tuple[dict[str, float], dict[str, int]]:
    """(shortest call in seconds, turns taken) of each runner, ``run(rows)``, timed in turns.

    Turn after turn every runner still in makes :data:`TRIAL_CALLS` calls, in an order that rotates
    (A B C, B C A, C A B, ...), until each has taken :data:`MIN_TRIALS` turns and ``deadline``
    seconds per runner have passed, or until ``stop`` (a ``perf_counter`` time) whatever they have.
    A runner under half the speed of the first one (the reference, fp32) after :data:`MIN_TRIALS`
    turns takes no more turns. A slowdown by other work hits whichever runner is running, so the
    turns spread it over all of them; the shortest call is the least disturbed one."""
    names = list(runners)
    best = dict.fromkeys(names, float("inf"))
    turns = dict.fromkeys(names, 0)
    active = list(names)
    t_end = time.perf_counter() + deadline * len(names)
    k = 0
    while True:
        shift = k % len(active)
        for name in active[shift:] + active[:shift]:
            for _ in range(TRIAL_CALLS):
                best[name] = min(best[name], _once(runners[name], rows))
            turns[name] += 1
        k += 1
        ref = best[names[0]]
        active = [n for n in active if n == names[0] or turns[n] < MIN_TRIALS or best[n] < 2 * ref]
        now = time.perf_counter()
        if (stop is not None and now >= stop) or (now >= t_end and min(turns[n] for n in active) >= MIN_TRIALS):
            return best, turns
        if len(active) == 1 and turns[active[0]] >= MIN_TRIALS:
            return best, turns


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
    skipped: dict[str, str] = {}
    try:
        runners = {"fp32": _torch_runner("fp32", hidden, intermediate, max_rows)}
        rows = _block_rows(runners["fp32"], max_rows, deadline)
        others: list[tuple[str, Callable[[], Callable[[int], object]]]] = []
        if bf16:
            others.append(("bf16", lambda: _torch_runner("bf16", hidden, intermediate, max_rows)))
        if int8:
            others.append(("int8", lambda: _int8_runner(hidden, intermediate, max_rows, threads)))
        for name, make in others:
            try:
                run = make()
                run(rows)  # warm-up, untimed
            except Exception as exc:  # noqa: BLE001 - a precision this build cannot run is no candidate
                skipped[name] = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                continue
            runners[name] = run
        best, turns = interleaved(runners, rows, deadline, stop=t0 + TOTAL_DEADLINE)
    finally:
        torch.set_num_threads(saved)
    rates = {p: flops_per_row * rows / t / 1e9 for p, t in best.items()}
    ratios = {p: best["fp32"] / t for p, t in best.items()}
    return Measurement(rates, ratios, dict.fromkeys(best, rows), hidden, intermediate, used, time.perf_counter() - t0,
                       skipped=skipped, trials=turns)


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
            trials={str(p): int(v) for p, v in (m.get("trials") or {}).items()},
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
    if found is not None:
        return found, True
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


def recorded_f1(model: str) -> dict[str, float]:
    """F1 - fp32's F1 (points) of each precision on ``model``'s dev set, as training recorded it in
    nerbatch.json (:func:`nerbatch.training.precision_check.dev_f1_by_precision`); empty for a model without that record."""
    import math

    record = read_json(os.path.join(model, "nerbatch.json")).get(F1_RECORD) if os.path.isdir(model) else None
    f1 = record.get("f1") if isinstance(record, dict) else None
    if not isinstance(f1, dict):
        return {}

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    if not number(f1.get("fp32")):
        return {}
    return {str(p): float(v) - float(f1["fp32"]) for p, v in f1.items() if p != "fp32" and number(v)}


def _evidence(p: str, diffs: dict[str, float]) -> str:
    if p in diffs:
        return f"F1 {diffs[p]:+.2f} against fp32 on this model's dev set"
    return f"no F1 record for this model: {F1_COST.get(p, float('nan')):.2f} F1 on the reference model"


def choose(m: Measurement, candidates: tuple[str, ...] = ("bf16", "int8"),
           excluded: dict[str, str] | None = None, diffs: dict[str, float] | None = None) -> tuple[str, str]:
    """(precision, reason) from a measurement: the fastest candidate within the F1 bound that beats
    fp32 by :data:`MARGIN`, else fp32. ``diffs``: the model's own F1 differences against fp32
    (:func:`recorded_f1`), its F1 cost being their size; a candidate without one is judged by
    :data:`F1_COST`, and the reason says which. ``excluded``: measured precisions that are no
    candidate here, and why (named in the reason when fp32 is kept)."""
    diffs = diffs or {}

    def cost(p: str) -> float:
        return abs(diffs[p]) if p in diffs else F1_COST.get(p, float("inf"))

    timed = [p for p in candidates if p in m.ratios]
    ok = [p for p in timed if cost(p) <= F1_BOUND]
    best = max(ok, key=lambda p: m.ratios[p], default=None)
    if best is not None and m.ratios[best] >= MARGIN:
        return best, f"{best} (auto: {_x(m.ratios[best])} fp32 here; {_evidence(best, diffs)})"
    others = [f"{p} {_x(m.ratios[p])}" for p in ok]
    others += [f"{p} {_x(m.ratios[p])} but {_evidence(p, diffs)}, over the {F1_BOUND} bound" for p in timed if p not in ok]
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
    if options.runtime != "onnx" and _gpu(options.device):  # (ONNX Runtime: the CPU)
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
    candidates = ("bf16", "int8") if exact else ("bf16",)
    if options.runtime == "onnx":  # ONNX Runtime runs fp32 and int8 only
        candidates = tuple(c for c in candidates if c != "bf16")
        excluded["bf16"] = "--runtime onnx"
    p, why = choose(m, candidates, excluded, recorded_f1(model))
    return replace(options, precision=p), PrecisionChoice(p, AUTO, why, m, cached)


def bf16_speedup(model: str, threads: int | None = None, *, cache_dir: str | None = None,
                 measure_fn: Callable[..., Measurement] | None = None) -> float:
    """bf16's measured matmul rate over fp32's on ``model``'s widths (CPU; cached as for ``tag``)."""
    m, _ = measured(model, threads, cache_dir=cache_dir, measure_fn=measure_fn)
    return m.ratios.get("bf16", 0.0)


