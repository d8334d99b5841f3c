"""fp32 inference on ONNX Runtime (``--runtime onnx``): an exported, fused copy of the model, cached.

Why: the torch path pays for torch and transformers at every start (2-7 s of imports on the CPUs
measured here, more than the tagging of a small file), and for a small model eager PyTorch's
per-operator overhead outweighs the arithmetic. A cached ONNX copy starts with onnxruntime alone
(about 0.2 s) and runs the fused graph: on a BERT-style model the exported graph goes through
ONNX Runtime's own transformer optimizer (``onnxruntime.transformers.optimizer``), which fuses
each layer's attention into one ``Attention`` operator, the embeddings and their LayerNorm into
one ``EmbedLayerNormalization``, and the residual adds into ``SkipLayerNormalization``. Measured
on a one-layer, hidden-8 BERT (BENCHMARKS.md): about half of eager PyTorch's time per subword;
on MiniLM, where the matrix products dominate, the same as eager PyTorch.

How: the model is exported with torch's TorchScript-based ONNX exporter, with the eager attention
(its masking is plain tensor arithmetic that the optimizer's attention fusion recognises; the
``torch.export`` exporter's graph keeps transformers' mask construction as dozens of small
operators), then optimised. The copy is checked against the torch model on a padded example batch
before it is kept: logits further than :data:`TOLERANCE` apart fall back to the unfused export,
and an export that neither path can produce is a :class:`~nerbatch.errors.ModelError` (the run
says so and how to run with torch). Tags are those of the torch model up to float rounding (the
same class of difference as a compiled copy: scores within 1e-3, tested).

Cached like the int8 copy (:mod:`nerbatch.model.cache`, ``onnx-*`` entries keyed by the folder's
contents and onnxruntime's version); a hub id is exported into a temporary folder on each run.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings

from ..errors import ModelError
from .int8 import LogitsOnly, cached_copy, export_onnx, quiet_logging, require

__all__ = ["onnx_fp32", "build_fp32", "TOLERANCE"]

TOLERANCE = 1e-3  # largest |logit| difference from the torch model on the check batch


def _export_fused(model, path: str, token_types: bool) -> dict:
    """Export with eager attention and the TorchScript exporter, then fuse with ONNX Runtime's
    transformer optimizer; returns the fused operators' counts."""
    import torch
    from onnxruntime.transformers import optimizer

    wrapped = LogitsOnly.wrap(model, token_types).eval()
    args, inputs = LogitsOnly.examples(2, token_types)
    axes = {0: "batch", 1: "seq"}
    previous = getattr(model.config, "_attn_implementation", None)
    raw = path + ".raw.onnx"
    try:
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), quiet_logging("torch.onnx"):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, args, raw, dynamo=False, opset_version=17, input_names=inputs, output_names=["logits"],
                dynamic_axes={**{name: axes for name in inputs}, "logits": axes},
            )
    finally:
        if previous and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(previous)
    config = model.config
    heads = getattr(config, "num_attention_heads", 0) or 0
    hidden = getattr(config, "hidden_size", 0) or 0
    with contextlib.redirect_stdout(io.StringIO()), quiet_logging("", "onnxruntime", "fusion", "onnx_model"):
        fused = optimizer.optimize_model(raw, model_type="bert", num_heads=heads, hidden_size=hidden)
        fused.save_model_to_file(path)
        counts = {k: v for k, v in fused.get_fused_operator_statistics().items() if v}
    os.unlink(raw)
    return counts


def _max_difference(model, path: str, token_types: bool) -> float:
    """The largest |logit| difference between ``model`` and the ONNX file on a padded check batch
    (at the positions that are not padding)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from .int8 import cpu_session, run_session

    gen = torch.Generator().manual_seed(0)
    vocab = int(getattr(model.config, "vocab_size", 100) or 100)
    ids = torch.randint(0, vocab, (3, 19), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[2, 4:] = 0
    types = torch.randint(0, 2, ids.shape, generator=gen) if token_types else None
    with torch.inference_mode():
        kwargs = {"token_type_ids": types} if token_types else {}
        ref = model(input_ids=ids, attention_mask=mask, **kwargs).logits.float().numpy()
    session = cpu_session(ort, path, threads=1)
    got = run_session(session, ids.numpy(), mask.numpy(), None if types is None else types.numpy())
    keep = mask.numpy().astype(bool)
    return float(np.abs(ref[keep] - got[keep]).max())


def build_fp32(model, path: str, token_types: bool = False) -> str:
    """Export ``model`` (a transformers token classifier on the CPU) to an fp32 ONNX file at ``path``,
    fused where the check passes; returns what was built ("fused: Attention 2, ..." or "unfused")."""
    import torch

    require()
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ModelError("--runtime onnx runs on the CPU only", hint="use --device cpu")
    model = model.eval()
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model = model.float()
    try:
        counts = _export_fused(model, path, token_types)
        diff = _max_difference(model, path, token_types)
        if diff <= TOLERANCE:
            return "fused: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        reason = f"the fused copy's logits differ by {diff:.2g}"
    except Exception as exc:  # noqa: BLE001 - an architecture the fusing export does not take: the plain export
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    export_onnx(model, path, token_types)
    diff = _max_difference(model, path, token_types)
    if diff > TOLERANCE:
        raise ModelError(f"the ONNX copy of the model does not match it (logits differ by {diff:.2g}; {reason})",
                         hint="use --runtime torch")
    return "unfused"


def onnx_fp32(
    model, folder: str | None, tokenizer, specials, cache_dir: str | None, max_width: int, token_types: bool = False
) -> str:
    """The fp32 ONNX file for ``model``, built once and kept as a cache entry (``onnx-*``; see
    :func:`nerbatch.tagging.int8.cached_copy`, as for the int8 copy)."""
    return cached_copy("onnx", build_fp32, model, folder, tokenizer, specials, cache_dir, max_width, token_types)
