"""int8 inference on CPU (``--precision int8``): ONNX export + ONNX Runtime dynamic int8 quantization.

``quantize_int8(model)`` takes a transformers token-classification model (fp32 or bf16, on the CPU)
and returns an :class:`Int8Model` that the tagger calls like the original:
``model(input_ids=..., attention_mask=...).logits`` -> float32 torch tensor ``(batch, seq, labels)``.

How: the model is exported with ``torch.onnx`` (dynamic batch and sequence axes), the weights of
every MatMul/Gemm with a constant weight are quantized to int8, per output channel, with
``onnxruntime.quantization.quantize_dynamic`` (activations are quantized per batch at run time, so no
calibration data is needed), and ONNX Runtime runs the result with its VNNI/AMX int8 kernels where the
CPU has them. Embeddings, LayerNorm, softmax and the attention products stay in fp32.

Why this back-end (compare with ``benchmarks/bench.py --int8-candidates``): of the int8 options that
ran faster than fp32, it kept the most words at their fp32 tag. It ran at the same speed as torch.ao's
deprecated ``quantize_dynamic``, and kept more words than it did. torchao's int8 is much slower than fp32 in eager
mode, and it needs a long ``torch.compile`` to catch up. On CPUs with AMX-BF16, ``--precision bf16`` is
faster than any int8 option measured here.

The export takes seconds to tens of seconds, so the quantized model is cached on disk, keyed by a hash
of the weights, the config and the library versions: ``$NERBATCH_CACHE_DIR`` if set, else
``$XDG_CACHE_HOME/nerbatch`` (``~/.cache/nerbatch``). ``cache_dir=None`` (or an unwritable folder)
quantizes in a temporary folder instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any

from .errors import ModelError

__all__ = ["Int8Model", "Int8Output", "quantize_int8", "default_cache_dir", "INSTALL_HINT"]

INSTALL_HINT = "pip install onnxruntime onnx onnxscript"
FORMAT_VERSION = 2  # bump when the export or quantization recipe changes (invalidates the cache)
_DEFAULT = object()


def default_cache_dir() -> str:
    """``$NERBATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/nerbatch``, else ``~/.cache/nerbatch``."""
    if os.environ.get("NERBATCH_CACHE_DIR"):
        return os.environ["NERBATCH_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nerbatch")


def _require():
    """Import onnxruntime/onnx (and check onnxscript, which torch's ONNX exporter needs)."""
    missing = []
    mods = {}
    for name in ("onnxruntime", "onnx", "onnxscript"):
        try:
            mods[name] = __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ModelError(
            f"--precision int8 needs {', '.join(missing)} (not installed)",
            hint=f"{INSTALL_HINT}, or use --precision fp32/bf16",
        )
    return mods["onnxruntime"], mods["onnx"]


@dataclass
class Int8Output:
    """What the tagger reads from a forward pass (like transformers' ``TokenClassifierOutput``)."""

    logits: Any  # torch.Tensor, float32, (batch, seq, num_labels)


class Int8Model:
    """An int8 ONNX Runtime session behind the small part of the transformers interface the tagger uses."""

    runs_numpy = True  # the tagger may call run_numpy() and skip torch altogether

    def __init__(self, session, config, path: str | None = None) -> None:
        self.session = session
        self.config = config
        self.path = path  # the cached .onnx file (None when it was built in a temporary folder)
        self._inputs = {i.name for i in session.get_inputs()}

    @property
    def device(self):
        import torch

        return torch.device("cpu")

    @property
    def dtype(self):
        import torch

        return torch.float32

    def run_numpy(self, ids, mask):
        """int64 ``(rows, width)`` arrays -> float32 logits ``(rows, width, labels)`` as numpy."""
        feeds = {"input_ids": ids, "attention_mask": mask}
        return self.session.run(["logits"], {k: v for k, v in feeds.items() if k in self._inputs})[0]

    def __call__(self, input_ids=None, attention_mask=None, **_ignored) -> Int8Output:
        import numpy as np
        import torch

        if input_ids is None:
            raise TypeError("input_ids is required")
        ids = _to_numpy(input_ids)
        mask = np.ones_like(ids) if attention_mask is None else _to_numpy(attention_mask)
        return Int8Output(logits=torch.from_numpy(self.run_numpy(ids, mask)))

    forward = __call__

    # the tagger (and transformers-style code) calls these; the session is fixed: CPU, int8
    def eval(self) -> "Int8Model":
        return self

    def to(self, *args, **kwargs) -> "Int8Model":
        import torch

        device = kwargs.get("device", args[0] if args and not isinstance(args[0], torch.dtype) else None)
        if device is not None and torch.device(device).type != "cpu":
            raise ModelError("--precision int8 runs on the CPU only", hint="use --device cpu, or fp16/bf16 on a GPU")
        return self

    def __repr__(self) -> str:
        return f"Int8Model({self.config.model_type}, onnxruntime, {self.path or 'in memory'})"


def _to_numpy(t):
    import numpy as np

    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.ascontiguousarray(t, dtype=np.int64)


def _fingerprint(model, ort, onnx) -> str:
    """Hash of the weights, config and versions: the cache key."""
    import torch

    h = hashlib.sha256()
    h.update(json.dumps([FORMAT_VERSION, torch.__version__, ort.__version__, onnx.__version__]).encode())
    h.update(model.config.to_json_string(use_diff=False).encode())
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu")
        if t.dtype == torch.bfloat16 or t.dtype == torch.float16:
            t = t.float()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


class _LogitsOnly:
    """Wraps the model so the exported graph has exactly (input_ids, attention_mask) -> logits."""

    @staticmethod
    def wrap(model):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, m) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

        return Wrapper(model)


def _export(model, path: str) -> None:
    """torch.onnx export with dynamic batch and sequence axes (dynamo exporter; TorchScript fallback)."""
    import torch

    wrapped = _LogitsOnly.wrap(model).eval()
    # example shapes > 1 so neither axis is specialised; a padded row so the mask path is traced
    ids = torch.full((2, 8), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    names = {"input_names": ["input_ids", "attention_mask"], "output_names": ["logits"]}
    sink = io.StringIO()  # the exporter prints progress to stdout, which may be our output stream
    errors = []
    with contextlib.redirect_stdout(sink), warnings.catch_warnings(), _quiet_logging("torch.onnx", "onnxscript"):
        warnings.simplefilter("ignore")
        try:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
            torch.onnx.export(
                wrapped,
                (ids, mask),
                path,
                dynamo=True,
                dynamic_shapes={"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}},
                external_data=False,
                verbose=False,
                **names,
            )
            return
        except Exception as exc:  # noqa: BLE001 - try the older exporter before giving up
            errors.append(f"dynamo exporter: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        try:
            axes = {0: "batch", 1: "seq"}
            torch.onnx.export(
                wrapped,
                (ids, mask),
                path,
                dynamo=False,
                opset_version=17,
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "logits": axes},
                **names,
            )
            return
        except Exception as exc:  # noqa: BLE001
            errors.append(f"TorchScript exporter: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise ModelError(f"cannot export the model to ONNX for int8: {'; '.join(errors)}", hint="use --precision fp32 or bf16")


@contextlib.contextmanager
def _quiet_logging(*names: str):
    """Raise these loggers to ERROR for a while (exporter/quantizer chatter on stderr)."""
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _quantize(src: str, dst: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # the root logger: "Please consider to run pre-processing before quantization"
    with _quiet_logging("", "onnxruntime"):
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,  # uint8 activations x int8 weights: the VNNI/AMX kernels
            per_channel=True,  # one scale per output column: 99.3% of words tag as in fp32 (98.5% per tensor)
            op_types_to_quantize=["MatMul", "Gemm"],  # with constant weights only (MatMulConstBOnly)
        )


def _build(model, folder: str, name: str) -> str:
    """Export + quantize into ``folder``; returns the int8 file (written atomically)."""
    with tempfile.TemporaryDirectory(prefix=".nerbatch-int8-", dir=folder) as work:
        fp32 = os.path.join(work, "model.fp32.onnx")
        _export(model, fp32)
        tmp = os.path.join(work, "model.int8.onnx")
        _quantize(fp32, tmp)
        out = os.path.join(folder, name)
        os.replace(tmp, out)
    return out


def default_threads() -> int:
    """Intra-op threads when none are asked for: torch's default if torch is loaded, else the CPUs
    this process may run on (the same number on a plain machine)."""
    import sys

    if "torch" in sys.modules:
        return sys.modules["torch"].get_num_threads()
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _session(ort, path: str, threads: int | None, spin: bool = False):
    opts = ort.SessionOptions()
    if not spin:
        # idle ORT workers sleep instead of spinning, leaving the CPU to the tagger's producer thread
        # (tokenising the next block) and to anything else on the machine
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads or default_threads()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def quantize_int8(model, *, cache_dir: Any = _DEFAULT, threads: int | None = None) -> Int8Model:
    """An int8 version of ``model`` for the CPU; see the module docstring.

    ``cache_dir``: where quantized models are kept (default :func:`default_cache_dir`; ``None``: no
    cache). ``threads``: ONNX Runtime intra-op threads (default: ``torch.get_num_threads()``).
    Raises :class:`ModelError` with an install hint when onnxruntime/onnx/onnxscript are missing.
    """
    ort, onnx = _require()
    import torch

    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ModelError("--precision int8 runs on the CPU only", hint="use --device cpu")
    model = model.eval()
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # export from fp32 weights; int8 scales come from them
    folder = default_cache_dir() if cache_dir is _DEFAULT else cache_dir
    if folder is not None:
        try:
            os.makedirs(folder, exist_ok=True)
            if not os.access(folder, os.W_OK):
                folder = None
        except OSError:
            folder = None
    if folder is None:
        with tempfile.TemporaryDirectory(prefix="nerbatch-int8-") as tmp:
            path = _build(model, tmp, "model.int8.onnx")
            session = _session(ort, path, threads)  # the session holds the model; the file can go
        return Int8Model(session, model.config, None)
    name = f"{model.config.model_type}-{_fingerprint(model, ort, onnx)}.int8.onnx"
    path = os.path.join(folder, name)
    if os.path.isfile(path):
        try:
            return Int8Model(_session(ort, path, threads), model.config, path)
        except Exception:  # noqa: BLE001 - a corrupt cache entry: rebuild it
            os.remove(path)
    path = _build(model, folder, name)
    return Int8Model(_session(ort, path, threads), model.config, path)
