"""Fine-tune an encoder for token classification (first-subword labels, -100 elsewhere).

``train(TrainOptions(...))`` returns the metrics dict and leaves a plain transformers model folder
(config with id2label/label2id, tokenizer, weights) plus ``metrics.json``, ``nerbatch.json`` and a
model card. Inputs are converted to IOB2; features use the same windows and document context as
tagging (``nerbatch.tagging.align``), and nerbatch.json records them so ``Tagger`` reproduces them.

A training is a job you can leave running:

- a checkpoint at every epoch end and every ``checkpoint_steps`` steps goes into a work folder
  beside the output (``nerbatch.training.output``); ``resume=True`` continues from the newest one and
  ends with the model an uninterrupted run makes; resuming with other data or options is refused;
- the model folder is assembled under a temporary name and renamed into place when complete; an
  existing model is replaced only with ``force`` (and swapped, never written into), and a folder that
  is not a nerbatch model never;
- ``select`` keeps the best epoch by dev F1 (default with a dev set) or the last; ``patience`` stops
  after that many epochs without a dev improvement;
- one lock per output (``nerbatch.run.manifest.OutputLock``): a second training of the same output
  exits with code 75.

The steps of :func:`train`: check the options and the output (``nerbatch.training.options``), take
the lock, resolve the base model and what is being trained into a :class:`TrainingJob` (with the
fingerprint ``--resume`` compares, ``nerbatch.training.resume``), prepare the work folder, load and
encode (``nerbatch.training.data``), build the Trainer and its plugins (``nerbatch.training.loop``),
train, assemble and install the model folder (``nerbatch.training.results``).
"""

from __future__ import annotations

import math
import os
import shutil

from ..errors import InputError, ModelError, NerbatchError, TrainingDiverged
from ..model import casing
from ..model.loading import check_fast, first_line
from ..model.settings import read_json, window_limit
from . import output as work_folder
from .data import Features, TrainingData, build_dataset, collect_labels, encode
from .options import TrainingJob, TrainOptions, bf16_is_fast, check_log_path, check_options, default_base_model
from .progress import Report
from .results import model_card, plural, result, write_model
from .resume import already_trained, describe_checkpoint, prepare_work, run_fingerprint

__all__ = [
    "train", "TrainOptions", "TrainingInterrupted", "TrainingJob", "collect_labels", "encode", "bf16_is_fast",
    "default_base_model", "model_card",
]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``message`` says where the last checkpoint is and how to resume."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def train(opts: TrainOptions) -> dict:
    """Train and install a model folder at ``opts.output_dir``; returns the metrics dict
    (``{"epochs": [...], "final": {...}, "selected": {...}, ...}``, also saved as metrics.json).

    Raises :class:`InputError`/:class:`ModelError`/:class:`OutputError` (exit 2) for bad data,
    options, base model or output, :class:`~nerbatch.errors.LockedError` (exit 75) when another
    training holds the output, :class:`TrainingInterrupted` on Ctrl-C (the checkpoint stays).
    """
    from ..io.remote import is_url
    from ..run.manifest import OutputLock

    if is_url(opts.output_dir):
        return _train_to_url(opts)
    select = check_options(opts)
    check_log_path(opts)
    output = opts.output_dir
    if not (opts.resume and os.path.isdir(output) and work_folder.is_model_folder(output)):  # (--resume: maybe up to date)
        work_folder.check_target(output, opts.force)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    lock = OutputLock(output)
    lock.acquire()
    try:
        work = work_folder.work_dir(output)
        work_folder.drop_foreign_work(work)
        if os.path.isdir(work):
            work_folder.recover_swap(work, output)
        return _train_locked(opts, select, work)
    finally:
        lock.release()


def _train_to_url(opts: TrainOptions) -> dict:
    """Train for ``-o URL``: the model is built in a local staging folder under the cache (its
    checkpoints beside it, so ``--resume`` continues on this machine), then uploaded with
    :func:`nerbatch.training.output.upload` (config.json last) and the staging folder removed. The
    URL's lock object is held throughout."""
    from dataclasses import replace

    from ..model.cache import default_cache_dir
    from ..run.manifest import OutputLock

    url = opts.output_dir
    check_options(opts)
    work_folder.check_remote_target(url, opts.force)
    stage = work_folder.staging_dir(url, default_cache_dir())
    lock = OutputLock(url)
    lock.acquire()
    try:
        if not opts.resume and os.path.isdir(stage) and work_folder.is_model_folder(stage):
            shutil.rmtree(stage)  # an earlier training's model that never went up: not this one's
        result = train(replace(opts, output_dir=stage))
        work_folder.upload(stage, url, opts.force)
        shutil.rmtree(os.path.dirname(stage), ignore_errors=True)
        return result
    finally:
        lock.release()


def _train_locked(opts: TrainOptions, select: str, work: str) -> dict:
    from ..io.remote import is_url
    from ..model.loading import hub_reachable, resolve_model

    base = opts.base_model or default_base_model()
    local = resolve_model(base)  # refuses missing folders, unreachable hub ids, folders with auto_map code
    if not local and not hub_reachable():
        local = True  # in the local cache only: do not wait on the network
    bf16 = opts.bf16
    if bf16 is None and opts.resume:  # resuming: the choice the interrupted run measured, not a new measurement
        bf16 = (read_json(os.path.join(work, work_folder.RUN_FILE)) or {}).get("options", {}).get("bf16")
    if bf16 is None:
        bf16 = bf16_is_fast(base, opts.threads)
    if opts.log_json and not is_url(opts.log_json):  # (an object is written whole at each record)
        try:
            open(opts.log_json, "a").close()
        except OSError as exc:
            raise InputError(f"cannot append the JSON log: {exc.strerror}", path=opts.log_json) from None
    fp = run_fingerprint(opts, base=base, bf16=bf16, select=select)
    job = TrainingJob(opts=opts, base=base, local=local, bf16=bf16, select=select, fingerprint=fp, work=work)
    if opts.resume:
        done = already_trained(job)
        if done is not None:
            return done
    work_folder.check_target(opts.output_dir, opts.force)
    resume_from, notes = prepare_work(job)
    try:
        return _fit(job, resume_from, notes)
    except TrainingDiverged:
        shutil.rmtree(work, ignore_errors=True)  # its checkpoints lead to the same divergence
        raise
    except KeyboardInterrupt:
        latest = work_folder.latest_checkpoint(work)
        if latest is None:
            shutil.rmtree(work, ignore_errors=True)
            raise TrainingInterrupted("interrupted before the first checkpoint; nothing was kept") from None
        raise TrainingInterrupted(
            f"interrupted; the last checkpoint ({describe_checkpoint(latest[0])}) is kept in {work}: "
            "run the same command with --resume to continue from it"
        ) from None
    except BaseException:
        if work_folder.latest_checkpoint(work) is None:
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume: leave nothing behind
        raise


def _prepare_data(job: TrainingJob) -> TrainingData:
    """Labels, the base model with a fresh head for them, casing, the encoded train and dev sets."""
    opts = job.opts
    seen: dict = {}
    labels = collect_labels(opts.train, opts.input_format, opts.read_options, seen)
    tokenizer, model = _load_base(job.base, job.local, labels)
    limit = window_limit(getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length)
    if opts.max_length > limit:
        raise ModelError(f"{job.base}: --max-length {opts.max_length} exceeds the encoder's limit of {limit} subwords",
                         hint=f"pass --max-length {limit} or less")
    stats: dict = {}
    dev_stats: dict = {}
    chosen = casing.resolve(opts.casing, tokenizer, model, job.base)
    casing_note = casing.note(opts.casing, chosen, tokenizer, model)
    shapes = chosen == "shape"
    if shapes:
        casing.widen_token_types(model)
    label2id = {lab: i for i, lab in enumerate(labels)}
    features = Features(tokenizer, label2id, max_length=opts.max_length, context=opts.context, shapes=shapes)
    train_ds = build_dataset(job, features, dev=False, stats=stats)
    dev_ds = build_dataset(job, features, dev=True, stats=dev_stats) if opts.dev else None
    return TrainingData(labels=labels, tokenizer=tokenizer, model=model, train=train_ds, dev=dev_ds, stats=stats,
                        dev_stats=dev_stats, shapes=shapes, casing_note=casing_note, from_text=bool(seen.get("text")))


def _fit(job: TrainingJob, resume_from: tuple[str, dict] | None, notes: list[str]) -> dict:
    import torch
    from transformers import set_seed

    from .loop import build_trainer

    opts, work = job.opts, job.work
    _quiet_libraries()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    set_seed(opts.seed)
    data = _prepare_data(job)
    report = Report(quiet=opts.quiet, log_json=opts.log_json, has_dev=data.dev is not None, output=opts.output_dir)
    trainer, plugins = build_trainer(job, data, report)
    checkpoint = None
    if resume_from is not None:
        checkpoint, state = resume_from
        plugins.restore(state)
    report.say(_startup_line(job, data))
    if data.casing_note:
        report.say(data.casing_note)
    for note in notes:
        report.say(note)
    try:
        if not plugins.checkpoints.finished:
            trainer.train(resume_from_checkpoint=checkpoint)
        report.close()
        metrics = result(job, data, plugins)
        latest = work_folder.latest_checkpoint(work)
        if latest is None or not latest[1].get("finished"):
            raise NerbatchError("training ended without a final checkpoint")  # not expected
        best = plugins.selection.best
        source = work_folder.best_dir(work, best["step"]) if job.select == "best" and best else latest[0]
        bad = work_folder.nonfinite_weights(source)  # (the last step's update is after its loss was checked)
        if bad:
            raise TrainingDiverged(f"{len(bad)} weight tensors hold NaN or infinite values ({bad[0]}, ...)", opts.lr, job.bf16)
        write_model(job, source, data.tokenizer, metrics)
    except KeyboardInterrupt:
        report.close()
        latest = work_folder.latest_checkpoint(work)
        report.log({"event": "interrupted", "checkpoint": latest[0] if latest else None})
        raise
    shutil.rmtree(work, ignore_errors=True)
    kept = metrics["selected"] or {}
    report.log({"event": "done", "kept_epoch": kept.get("epoch"), "reason": kept.get("reason"),
                "f1": (metrics["final"] or {}).get("f1"), "train_seconds": metrics["train_seconds"]})
    return metrics


def _quiet_libraries() -> None:
    """No log lines, warnings or progress bars of transformers/datasets/hub: nerbatch reports."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def _load_base(base: str, local: bool, labels: list[str]):
    """Tokenizer and a token-classification model with a fresh head for ``labels``. Never runs
    code from the model folder (``trust_remote_code=False``); an architecture transformers does
    not know is refused."""
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if local:
        cfg = read_json(os.path.join(base, "config.json"))
        if not cfg:
            raise ModelError(f"{base}: no readable config.json", hint="pass an encoder folder or hub id as --base-model")
        if cfg.get("model_type") not in CONFIG_MAPPING:
            raise ModelError(
                f"{base}: config.json names model_type {cfg.get('model_type')!r}, an architecture this transformers does not know",
                hint="use an encoder such as BERT, RoBERTa, DeBERTa or MiniLM",
            )
    common = {"local_files_only": local, "trust_remote_code": False}
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, **common)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError/ValueError/etc.
        raise ModelError(f"{base}: cannot load the tokenizer: {first_line(exc)}") from None
    check_fast(tokenizer, base)
    id2label = dict(enumerate(labels))
    try:
        config = AutoConfig.from_pretrained(
            base, num_labels=len(labels), id2label=id2label, label2id={lab: i for i, lab in id2label.items()}, **common
        )
        model = AutoModelForTokenClassification.from_pretrained(
            base, config=config, ignore_mismatched_sizes=True, **common  # a base with a classifier gets a fresh one
        )
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{base}: cannot load the encoder: {first_line(exc)}") from None
    return tokenizer, model


def _startup_line(job: TrainingJob, data: TrainingData) -> str:
    import torch

    opts, stats, windows = job.opts, data.stats, len(data.train)
    per_epoch = math.ceil(windows / opts.batch_size)
    total = math.ceil(opts.epochs * per_epoch)
    kept = f"{stats['kept']:,} of {stats['sentences']:,} sentences (--every {opts.every})" if opts.every > 1 else plural(stats["sentences"], "sentence")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = "" if device == "cuda" else f", {plural(torch.get_num_threads(), 'thread')}"
    dev = f"; dev {plural(data.dev_stats['sentences'], 'sentence')}" if opts.dev else "; no dev set"
    every = f" and every {opts.checkpoint_steps} steps" if opts.checkpoint_steps and opts.checkpoint_steps < total else ""
    return (
        f"training on {kept} in {plural(windows, 'window')}: {opts.epochs:g} epochs of {plural(per_epoch, 'step')} "
        f"(batch {opts.batch_size}) = {plural(total, 'step')}{dev}; {'bf16 autocast' if job.bf16 else 'fp32'} on {device}{threads}; "
        f"checkpoints at each epoch end{every} in {job.work}"
    )
