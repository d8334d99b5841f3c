"""int8 inference on CPU (``--precision int8``): ONNX export + ONNX Runtime dynamic int8 quantization.

``quantize_int8(model, ...)`` takes a transformers token-classification model (fp32 or bf16, on the
CPU) and returns the path of its int8 ONNX file; :func:`open_session` and :func:`run_session` run it
on numpy arrays (the :class:`nerbatch.tagging.backends.OnnxBackend` does, without torch).

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

The export takes seconds to tens of seconds, so the quantized model is kept as one cache entry
(:mod:`nerbatch.model.cache`): keyed by the model folder's contents and onnxruntime's version, or for a hub
id by a hash of the weights, the config and the library versions. ``cache_dir=None`` (or an
unwritable folder) quantizes in a temporary folder instead.
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

from ..errors import ModelError

__all__ = ["quantize_int8", "cached_copy", "build_int8", "fingerprint", "open_session", "run_session", "export_onnx", "LogitsOnly", "quiet_logging", "require", "INSTALL_HINT"]

INSTALL_HINT = "pip install onnxruntime onnx onnxscript"
FORMAT_VERSION = 2  # bump when the export or quantization recipe changes (invalidates the cache)


def require():
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


def fingerprint(model, ort, onnx) -> str:
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


class LogitsOnly:
    """Wraps the model so the exported graph has exactly (input_ids, attention_mask) -> logits, or
    (input_ids, attention_mask, token_type_ids) -> logits for a model trained with casing ids."""

    @staticmethod
    def wrap(model, token_types: bool = False):
        import torch

        class Wrapper(torch.nn.Module):
            def __init__(self, m) -> None:
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask):
                return self.m(input_ids=input_ids, attention_mask=attention_mask).logits

        class TypedWrapper(Wrapper):
            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits

        return (TypedWrapper if token_types else Wrapper)(model)

    @staticmethod
    def examples(rows: int, token_types: bool):
        """Example inputs for an export (sizes > 1 so no axis is specialised, a padded row so the
        mask path is traced) and their input names."""
        import torch

        ids = torch.full((rows, 8), 100, dtype=torch.long)
        mask = torch.ones_like(ids)
        mask[1, 5:] = 0
        if not token_types:
            return (ids, mask), ["input_ids", "attention_mask"]
        types = torch.zeros_like(ids)
        types[0, 1:3] = 1
        return (ids, mask, types), ["input_ids", "attention_mask", "token_type_ids"]


def export_onnx(model, path: str, token_types: bool = False) -> None:
    """torch.onnx export with dynamic batch and sequence axes (dynamo exporter; TorchScript fallback)."""
    import torch

    wrapped = LogitsOnly.wrap(model, token_types).eval()
    args, inputs = LogitsOnly.examples(2, token_types)
    names = {"input_names": inputs, "output_names": ["logits"]}
    sink = io.StringIO()  # the exporter prints progress to stdout, which may be our output stream
    errors = []
    with contextlib.redirect_stdout(sink), warnings.catch_warnings(), quiet_logging("torch.onnx", "onnxscript"):
        warnings.simplefilter("ignore")
        try:
            batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
            torch.onnx.export(
                wrapped,
                args,
                path,
                dynamo=True,
                dynamic_shapes={name: {0: batch, 1: seq} for name in inputs},
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
                args,
                path,
                dynamo=False,
                opset_version=17,
                dynamic_axes={**{name: axes for name in inputs}, "logits": axes},
                **names,
            )
            return
        except Exception as exc:  # noqa: BLE001
            errors.append(f"TorchScript exporter: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    raise ModelError(f"cannot export the model to ONNX for int8: {'; '.join(errors)}", hint="use --precision fp32 or bf16")


@contextlib.contextmanager
def quiet_logging(*names: str):
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
    with quiet_logging("", "onnxruntime"):
        quantize_dynamic(
            src,
            dst,
            weight_type=QuantType.QInt8,  # uint8 activations x int8 weights: the VNNI/AMX kernels
            per_channel=True,  # one scale per output column: 99.3% of words tag as in fp32 (98.5% per tensor)
            op_types_to_quantize=["MatMul", "Gemm"],  # with constant weights only (MatMulConstBOnly)
        )


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


def open_session(path: str, threads: int | None = None, spin: bool = False):
    """An ONNX Runtime CPU session for ``path``: onnxruntime alone is imported (onnx and onnxscript,
    which only building a copy needs, took 1-2 s to import)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("running an ONNX copy of the model needs onnxruntime (not installed)",
                         hint=f"{INSTALL_HINT}, or use --precision fp32/bf16 with --runtime torch") from None
    return cpu_session(ort, path, threads, spin)


def cpu_session(ort, path: str, threads: int | None = None, spin: bool = False):
    """The session of :func:`open_session` from an imported ``onnxruntime`` (no onnx import)."""
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


def run_session(session, ids, mask, types=None):
    """int64 ``(rows, width)`` arrays -> float32 logits ``(rows, width, labels)`` as numpy.
    ``types``: the token type (casing) ids, for a model exported with them."""
    import numpy as np

    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = types if types is not None else np.zeros_like(ids)
    elif types is not None:
        raise ModelError("the int8 model was exported without token type (casing) ids", hint="clear the nerbatch cache")
    return session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]


def build_int8(model, path: str, token_types: bool = False) -> None:
    """Export ``model`` (a transformers token-classification model) and quantize it into ``path``."""
    import torch

    require()
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ModelError("--precision int8 runs on the CPU only", hint="use --device cpu")
    model = model.eval()
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()  # export from fp32 weights; int8 scales come from them
    with tempfile.TemporaryDirectory(prefix=".nerbatch-int8-", dir=os.path.dirname(os.path.abspath(path))) as work:
        fp32 = os.path.join(work, "model.fp32.onnx")
        export_onnx(model, fp32, token_types)
        _quantize(fp32, path)


def quantize_int8(
    model, folder: str | None, tokenizer, specials, cache_dir: str | None, max_width: int, token_types: bool = False
) -> str:
    """The int8 ONNX file for ``model``, built once and kept as a cache entry (see :func:`cached_copy`)."""
    return cached_copy("int8", build_int8, model, folder, tokenizer, specials, cache_dir, max_width, token_types)


def cached_copy(
    kind: str, build, model, folder: str | None, tokenizer, specials, cache_dir: str | None, max_width: int,
    token_types: bool = False,
) -> str:
    """The ONNX file of ``kind`` ("int8", or "onnx": the fp32 copy of :mod:`nerbatch.tagging.onnx_fp32`) for
    ``model``, made by ``build(model, path, token_types)`` once and kept as a cache entry (see
    :mod:`nerbatch.model.cache`; what ``build`` returns, if anything, is recorded as the entry's ``graph``).

    ``folder``: the model folder the weights came from (the entry is keyed by its contents), or None
    for a hub id (keyed by a hash of the weights). ``cache_dir`` None, or one that cannot be written:
    built in a temporary folder (the session keeps the model in memory; the file may go).
    """
    from ..model import cache

    ort, onnx = require()
    key = cache.entry_key(folder, kind) if folder else f"{kind}-" + fingerprint(model, ort, onnx)
    if cache_dir is not None:
        entry = cache.find_entry(cache_dir, key, kind)
        if entry is not None:
            return entry.package
        meta = cache.entry_meta(folder or getattr(model.config, "_name_or_path", "?"), kind, tokenizer, model, specials, max_width)
        meta["token_types"] = token_types

        def write(dst: str) -> None:
            made = build(model, dst, token_types)
            if made:
                meta["graph"] = made

        try:
            return cache.save_entry(cache_dir, key, kind, tokenizer, meta, write).package
        except cache.CacheError:
            pass  # an unwritable cache: build without it
    path = os.path.join(tempfile.mkdtemp(prefix=f"nerbatch-{kind}-"), cache.PACKAGE_FILES[kind])
    build(model, path, token_types)
    return path
