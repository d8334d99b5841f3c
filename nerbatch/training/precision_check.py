"""After training: the model's dev F1 in each precision ``tag --precision auto`` may pick on this
machine, recorded in nerbatch.json so that auto bounds this model's F1 cost by its own numbers
(:func:`nerbatch.tagging.precision.recorded_f1`)."""

from __future__ import annotations

from ..tagging.precision import int8_available, int8_exact

__all__ = ["dev_f1_by_precision"]


def dev_f1_by_precision(model: str, dev: str, *, fmt: str | None = None, options=None, threads: int | None = None) -> dict | None:
    """What ``nerbatch train`` records in nerbatch.json (:data:`nerbatch.tagging.precision.F1_RECORD`): the F1 (points) of
    ``model`` on its dev set in fp32 and in each candidate precision of ``auto`` that this machine
    can run, each tagged on the CPU through the back-end ``tag`` runs (eager fp32 and bf16, the ONNX
    Runtime int8 model), with the precisions left out and why. The int8 model is built in a
    throw-away cache folder (the model folder's contents change once this is recorded). None when
    not even fp32 could be scored: a failure here never fails the training."""
    import tempfile

    from ..evaluation.evaluate import evaluate_model
    from ..io import ReadOptions
    from ..tagging.tagger import TaggerOptions

    f1: dict[str, float] = {}
    left_out: dict[str, str] = {}
    sentences = 0
    with tempfile.TemporaryDirectory(prefix="nerbatch-precision-check-") as cache:
        for p in ("fp32", "bf16", "int8"):
            if p == "int8" and not int8_available():
                left_out[p] = "onnxruntime, onnx or onnxscript not installed"
                continue
            if p == "int8" and not int8_exact():
                left_out[p] = "no VNNI here (int8 products saturate)"
                continue
            opts = TaggerOptions(device="cpu", precision=p, compile=False, threads=threads, cache_dir=cache)
            try:
                result = evaluate_model(model, [dev], fmt=fmt, options=options or ReadOptions(), tagger_options=opts,
                                        bootstrap=0, examples=0)
            except Exception as exc:  # noqa: BLE001 - a precision this machine or build cannot run: no record of it
                left_out[p] = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                if p == "fp32":
                    return None  # nothing to compare with: no record, the model is not affected
                continue
            f1[p] = round(100 * result["overall"]["f1"], 4)
            sentences = result["sentences"]
    return {"dev": dev, "sentences": sentences, "f1": f1, "left_out": left_out}
