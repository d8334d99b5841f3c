"""What a training leaves: the metrics dict (metrics.json), nerbatch.json, the model card, and the
model folder assembled from the kept checkpoint (with the dev F1 per precision, see
:mod:`nerbatch.training.precision_check`) and swapped into place."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from typing import TYPE_CHECKING

from .. import __version__
from ..core.tokenize import contract
from ..model.settings import NERBATCH_CONFIG
from ..tagging.precision import F1_RECORD
from . import output as work_folder
from .data import TrainingData
from .options import RUN_ONLY, TrainingJob, TrainOptions
from .progress import format_epochs

if TYPE_CHECKING:  # (plugins import transformers)
    from .plugins import Plugins

__all__ = ["plural", "result", "write_model", "model_card"]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def result(job: TrainingJob, data: TrainingData, plugins: Plugins) -> dict:
    """The metrics dict of a finished training (metrics.json): settings as resolved, labels, data
    sizes, the epoch rows, the kept epoch and why, early stopping, the fingerprint."""
    opts, select, best = job.opts, job.select, plugins.selection.best
    rows = plugins.epochs.rows
    if select == "best" and best is not None:
        kept = next(r for r in rows if r["step"] == best["step"])
        reason = f"the best dev F1 ({100 * kept['f1']:.2f}) of {plural(len(rows), 'epoch')}"
    else:
        kept = rows[-1] if rows else None
        reason = "the last epoch" + (" (--select last)" if opts.dev else " (no dev set to select by)")
    settings = {k: v for k, v in asdict(opts).items() if k not in RUN_ONLY + ("read_options",)}
    settings["output_dir"] = opts.output_dir
    # as resolved (auto -> this machine's / this encoder's choice)
    settings.update(base_model=job.base, bf16=job.bf16, select=select, casing="shape" if data.shapes else "none")
    out = {
        "nerbatch_version": __version__,
        "settings": settings,
        "labels": data.labels,
        "train_sentences": data.stats.get("kept"),
        "train_features": len(data.train),
        "train_seconds": round(plugins.epochs.train_seconds, 1),
        "train_loss": plugins.epochs.total_loss / max(1, plugins.epochs.total_steps),
        "epochs": rows,
        "final": kept,
        "selected": None if kept is None else {"epoch": kept["epoch"], "step": kept["step"], "select": select, "reason": reason},
        "stopped_early": plugins.selection.stopped_early,
        "fingerprint": job.fingerprint,
    }
    if data.casing_note:
        out["casing_note"] = data.casing_note
    if data.from_text:  # trained on raw text: how it was cut, for `tag` to cut text the same way
        out["text"] = contract(opts.read_options.layout, opts.read_options.tokenizer)
    return out


def write_model(job: TrainingJob, source: str, tokenizer, result: dict) -> None:
    """Assemble the model folder under ``WORK/model.new`` (weights linked from the checkpoint folder
    ``source``, small files written atomically, the user's permissions, flushed), then swap it in at
    the output."""
    from ..io.atomic import atomic_write
    from .loop import stop_for_tests

    opts, work = job.opts, job.work
    new = os.path.join(work, "model.new")
    shutil.rmtree(new, ignore_errors=True)
    os.makedirs(new)
    work_folder.link_model_files(source, new)
    tokenizer.save_pretrained(new)
    atomic_write(os.path.join(new, "metrics.json"), json.dumps(result, indent=2) + "\n")
    saved = {"nerbatch_version": __version__, "max_length": opts.max_length, "context": opts.context, "scheme": "IOB2",
             "casing": result["settings"]["casing"]}
    if result.get("text"):
        saved["text"] = result["text"]
    atomic_write(os.path.join(new, NERBATCH_CONFIG), json.dumps(saved, indent=2) + "\n")
    calibration = _calibrate(new, opts)
    if calibration is not None:
        saved["calibration"] = calibration.to_json()
        result["calibration"] = calibration.info
        atomic_write(os.path.join(new, NERBATCH_CONFIG), json.dumps(saved, indent=2) + "\n")
        atomic_write(os.path.join(new, "metrics.json"), json.dumps(result, indent=2) + "\n")
    evidence = _precision_check(new, opts)
    if evidence is not None:
        saved[F1_RECORD] = result[F1_RECORD] = evidence
        atomic_write(os.path.join(new, NERBATCH_CONFIG), json.dumps(saved, indent=2) + "\n")
        atomic_write(os.path.join(new, "metrics.json"), json.dumps(result, indent=2) + "\n")
    atomic_write(os.path.join(new, "README.md"), model_card(result))
    work_folder.settle(new)
    stop_for_tests("final-save")
    work_folder.install(new, opts.output_dir, work=work, force=opts.force)


def _calibrate(folder: str, opts: TrainOptions):
    """The entity-score calibration map of the model assembled in ``folder``, fitted on the dev set
    (:mod:`nerbatch.training.calibrate`), or None (no dev set, or no entity predicted there: said
    unless quiet; the model is kept either way, its scores uncalibrated)."""
    import sys

    from ..errors import NerbatchError
    from ..tagging.tagger import TaggerOptions
    from .calibrate import describe, fit_on_dev

    if not opts.dev:
        return None
    tagger_options = TaggerOptions(precision="fp32", compile=False, threads=opts.threads)
    try:
        calibration = fit_on_dev(folder, opts.dev, fmt=opts.input_format, options=opts.read_options,
                                 tagger_options=tagger_options)
    except NerbatchError as exc:
        if not opts.quiet:
            print(f"entity scores left uncalibrated: {exc}", file=sys.stderr, flush=True)
        return None
    if not opts.quiet:
        print(describe(calibration), file=sys.stderr, flush=True)
    return calibration


def _precision_check(folder: str, opts: TrainOptions) -> dict | None:
    """The dev F1 per precision of the model assembled in ``folder`` (see TrainOptions.precision_check),
    or None (no dev set, or the check is off)."""
    import sys

    from .precision_check import dev_f1_by_precision

    want = opts.precision_check
    if want is None:
        want = os.environ.get("NERBATCH_PRECISION_CHECK", "").strip().lower() not in ("0", "no", "false", "off")
    if not want or not opts.dev:
        return None
    evidence = dev_f1_by_precision(folder, opts.dev, fmt=opts.input_format, options=opts.read_options, threads=opts.threads)
    if evidence is not None and not opts.quiet:
        f1 = evidence["f1"]
        shown = [f"{p} {v:.2f}" + ("" if p == "fp32" else f" ({v - f1['fp32']:+.2f})") for p, v in f1.items()]
        shown += [f"{p} not measured ({why})" for p, why in evidence["left_out"].items()]
        print(f"dev F1 by precision (recorded for --precision auto): {', '.join(shown)}", file=sys.stderr, flush=True)
    return evidence


def model_card(result: dict) -> str:
    s = result["settings"]
    sel = result.get("selected") or {}
    lines = [
        "# nerbatch NER model",
        "",
        f"Token classification fine-tuned by nerbatch {result['nerbatch_version']} from `{s['base_model']}`.",
        "",
        f"- labels: {', '.join(result['labels'])}",
        f"- training files: {', '.join(s['train'])} (every {s['every']}. sentence), dev: {s['dev']}",
        f"- epochs {s['epochs']}, learning rate {s['lr']}, batch {s['batch_size']}, warm-up {s['warmup']}, "
        f"schedule {s['scheduler']}, max length {s['max_length']}, document context {s['context']}, seed {s['seed']}",
        f"- training time: {result['train_seconds']} s",
    ]
    if result.get("casing_note"):
        lines.append(f"- casing ({s['casing']}): {result['casing_note']}")
    if sel:
        lines.append(f"- kept: the weights after epoch {sel['epoch']:g}, {sel['reason']} (--select {sel['select']})")
    if result.get("calibration"):
        cal = result["calibration"]
        after = "" if cal.get("ece_held_out") is None else f", about {cal['ece_held_out']} after on held-out sentences"
        lines.append(
            f"- entity scores: calibrated on {cal['entities']:,} dev entities (isotonic; expected calibration error "
            f"{cal['ece_uncalibrated']} before{after})"
        )
    if result.get("stopped_early"):
        st = result["stopped_early"]
        lines.append(
            f"- stopped early after epoch {st['epoch']:g}: no dev F1 improvement in {st['patience']} epochs (--patience {st['patience']})"
        )
    lines += [
        "",
        "Load it with plain transformers: `pipeline(\"token-classification\", model=THIS_FOLDER)`, or tag files with",
        "`nerbatch tag FILE --model THIS_FOLDER` (which also applies the document context recorded in nerbatch.json).",
        "",
    ]
    if any("f1" in r for r in result["epochs"]):
        kept_step = sel.get("step")
        lines += ["## Dev scores per epoch (conlleval rules)", "", "```", format_epochs(result["epochs"], kept_step), "```", ""]
    return "\n".join(lines)
