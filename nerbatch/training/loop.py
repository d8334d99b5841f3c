"""The parts of `nerbatch train` that need torch and transformers: nerbatch's ``Trainer``, its
length-grouped sampler and loss, and :func:`build_trainer`, which composes the Trainer with the
plugins of :mod:`nerbatch.training.plugins` (checkpoints, selection, early stopping, the loss guard,
progress). :func:`nerbatch.training.train.train` imports this module when it starts training, so
``import nerbatch.training.train`` stays light.

Resuming: the Trainer restores model, optimiser, scheduler and RNG states from a checkpoint, calls
``set_epoch`` on the sampler and skips the batches of the resumed epoch that were already trained.
The sampler's order is a function of (seed, epoch) only, so the skipped batches are the ones the
killed run trained and the rest of the epoch is what an uninterrupted run would have seen. The
plugins keep their own state (epoch rows, best epoch, loss sums, seconds) in each checkpoint's
``nerbatch-state.json``, written last.
"""

from __future__ import annotations

import math
import os
import signal

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..tagging.align import IGNORE
from . import output as work_folder
from .data import TrainingData
from .options import TrainingJob
from .plugins import Epochs, Plugins
from .progress import Report
from .sampling import length_grouped_batches

__all__ = ["LengthGroupedSampler", "WordLoss", "NerTrainer", "stop_for_tests", "build_trainer"]


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Indices in the order of :func:`nerbatch.training.sampling.length_grouped_batches` with seed ``seed + epoch``."""

    def __init__(self, lengths: list[int], *, batch_size: int, pool: int, seed: int) -> None:
        self.lengths, self.batch_size, self.pool, self.seed = lengths, batch_size, pool, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before every epoch, also the one it resumes in."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        for batch in length_grouped_batches(self.lengths, self.batch_size, pool=self.pool, seed=self.seed + self.epoch):
            yield from batch


class WordLoss:
    """Cross-entropy summed over the labelled words of a batch, divided by a constant: the labelled
    words of an average batch.

    Grouped batches hold very different numbers of labelled words (a batch of 3-word headlines vs
    one of 40-word sentences). The usual per-batch mean would give each word of a short batch
    several times the weight of a word in a long one; a constant divisor weighs every word the same,
    as random batches do on average. Measured: grouped batches with the per-batch mean lost about 1
    dev F1 point against random batches (BENCHMARKS.md, training speed).
    """

    def __init__(self, per_batch: float, ignore_index: int) -> None:
        self.per_batch = per_batch
        self.ignore_index = ignore_index

    def __call__(self, outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        total = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=self.ignore_index, reduction="sum"
        )
        return total / self.per_batch


class NerTrainer(Trainer):
    """The HF Trainer with nerbatch's sampler (``grouping=(pool, seed)``), silent (no printing or
    progress callbacks of its own), feeding each step's loss to ``epochs``."""

    def __init__(self, *args, epochs: Epochs, grouping: tuple[int, int] | None = None, **kwargs) -> None:
        self.epochs = epochs
        self.grouping = grouping
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # prints raw log dicts
        self.remove_callback(ProgressCallback)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.grouping is not None and ds is not None:
            pool, seed = self.grouping
            lengths = [len(x) for x in ds["input_ids"]]
            return LengthGroupedSampler(lengths, batch_size=self.args.train_batch_size, pool=pool, seed=seed)
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.epochs.add_loss(loss)
        return loss


def stop_for_tests(point: str) -> None:
    """Test hook: with ``NERBATCH_TEST_STOP_AT=POINT`` in the environment the process stops itself
    (SIGSTOP) at that point (``checkpoint-STEP``, ``final-save``), so a test can SIGKILL it there."""
    if os.environ.get("NERBATCH_TEST_STOP_AT") == point:
        os.kill(os.getpid(), signal.SIGSTOP)


class StopsForTests(TrainerCallback):
    """Calls :func:`stop_for_tests` once a checkpoint is complete and shown (the last of the callbacks)."""

    def on_save(self, args, state, control, **kw):
        stop_for_tests(f"checkpoint-{state.global_step}")


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


def _labelled_per_batch(train_ds, batch_size: int) -> float:
    labelled = sum(sum(1 for x in row if x != IGNORE) for row in train_ds["labels"])
    return max(1.0, labelled / max(1, len(train_ds)) * batch_size)


def build_trainer(job: TrainingJob, data: TrainingData, report: Report) -> tuple[NerTrainer, Plugins]:
    """nerbatch's Trainer: no Trainer-driven saving, logging or printing; the plugins decide when to
    checkpoint, keep the epoch rows and the best epoch, stop early and show progress."""
    from transformers import DataCollatorForTokenClassification, TrainingArguments

    opts = job.opts
    args = TrainingArguments(
        output_dir=work_folder.trainer_dir(job.work),
        learning_rate=opts.lr,
        per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=max(64, opts.batch_size),
        num_train_epochs=opts.epochs,
        weight_decay=opts.weight_decay,
        warmup_steps=opts.warmup,
        lr_scheduler_type=opts.scheduler,
        eval_strategy="epoch" if data.dev is not None else "no",
        save_strategy="no",  # the Checkpoints plugin sets should_save
        logging_strategy="no",
        report_to="none",
        seed=opts.seed,
        train_sampling_strategy="random",  # group_by_length: our own sampler (NerTrainer)
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        bf16=job.bf16,
    )
    plugins = Plugins.build(job, steps_per_epoch=math.ceil(len(data.train) / opts.batch_size), report=report)
    trainer = NerTrainer(
        model=data.model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.dev,
        data_collator=DataCollatorForTokenClassification(data.tokenizer),
        processing_class=data.tokenizer,
        compute_metrics=_metrics_fn(dict(enumerate(data.labels))) if data.dev is not None else None,
        compute_loss_func=WordLoss(_labelled_per_batch(data.train, opts.batch_size), IGNORE) if opts.group_by_length else None,
        preprocess_logits_for_metrics=lambda logits, _labels: logits.argmax(-1),
        callbacks=[*plugins.all(), StopsForTests()],
        epochs=plugins.epochs,
        grouping=(opts.group_pool, opts.seed) if opts.group_by_length else None,
    )
    return trainer, plugins
