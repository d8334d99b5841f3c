"""The parts of `nerbatch train` that need torch and transformers: nerbatch's ``Trainer``, its
length-grouped sampler and loss, and the callback that checkpoints, selects the model, stops early
and reports progress. :func:`nerbatch.training.train.train` imports this module when it starts training, so
``import nerbatch.training.train`` stays light.

Resuming: the Trainer restores model, optimiser, scheduler and RNG states from a checkpoint, calls
``set_epoch`` on the sampler and skips the batches of the resumed epoch that were already trained.
The sampler's order is a function of (seed, epoch) only, so the skipped batches are the ones the
killed run trained and the rest of the epoch is what an uninterrupted run would have seen.
:class:`TrainRun` keeps its own state (epoch rows, best epoch, loss sums, seconds) in each
checkpoint's ``nerbatch-state.json``, written last.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from datetime import datetime, timezone

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from ..errors import OutputError, TrainingDiverged
from . import output as work_folder
from .progress import epoch_row, table_header
from .sampling import length_grouped_batches

CHECK_EVERY = 32  # on a GPU, steps between looks at the loss (each waits for the GPU); on the CPU: every step


class LengthGroupedSampler(torch.utils.data.Sampler):
    """Indices in the order of :func:`nerbatch.training.sampling.length_grouped_batches` with seed ``seed + epoch``."""

    def __init__(self, lengths: list[int], batch_size: int, pool: int, seed: int) -> None:
        self.lengths, self.batch_size, self.pool, self.seed = lengths, batch_size, pool, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by the Trainer before every epoch, also the one it resumes in."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        for batch in length_grouped_batches(self.lengths, self.batch_size, self.pool, self.seed + self.epoch):
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
    progress callbacks of its own), feeding each step's loss to ``run``."""

    def __init__(self, *args, run: "TrainRun", grouping: tuple[int, int] | None = None, **kwargs) -> None:
        self.run = run
        self.grouping = grouping
        super().__init__(*args, **kwargs)
        self.remove_callback(PrinterCallback)  # prints raw log dicts
        self.remove_callback(ProgressCallback)

    def _get_train_sampler(self, train_dataset=None):
        ds = train_dataset if train_dataset is not None else self.train_dataset
        if self.grouping is not None and ds is not None:
            pool, seed = self.grouping
            return LengthGroupedSampler([len(x) for x in ds["input_ids"]], self.args.train_batch_size, pool, seed)
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.run.add_loss(loss)
        return loss


def stop_for_tests(point: str) -> None:
    """Test hook: with ``NERBATCH_TEST_STOP_AT=POINT`` in the environment the process stops itself
    (SIGSTOP) at that point (``checkpoint-STEP``, ``final-save``), so a test can SIGKILL it there."""
    if os.environ.get("NERBATCH_TEST_STOP_AT") == point:
        os.kill(os.getpid(), signal.SIGSTOP)


class Report:
    """Output for people and cron: one progress bar over the steps (only on a terminal), a table
    row per finished epoch on stderr, and one JSON record per epoch appended to ``log_json``."""

    def __init__(self, quiet: bool, log_json: str | None, has_dev: bool, output: str) -> None:
        self.quiet = quiet
        self.log_json = log_json
        self.has_dev = has_dev
        self.output = output
        self.bar = None
        self._header = False
        self._shown = 0.0

    def say(self, text: str) -> None:
        if not self.quiet:
            self._write(text)

    def _write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def start(self, total: int, done: int) -> None:
        if self.quiet or not sys.stderr.isatty():
            return
        from tqdm import tqdm

        self.bar = tqdm(total=total, initial=done, unit="step", desc="training", file=sys.stderr, dynamic_ncols=True)

    def step(self, running_loss) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.monotonic()
        if now - self._shown >= 1.0:  # the loss costs a device sync: at most once a second
            self._shown = now
            loss = running_loss()
            if loss is not None:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def epoch(self, row: dict, record: dict) -> None:
        if not self.quiet:
            if not self._header:
                self._write(table_header(self.has_dev))
                self._header = True
            self._write(epoch_row(row))
        self.log({"event": "epoch", **record})

    def log(self, record: dict) -> None:
        if not self.log_json:
            return
        record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "output": self.output, **record}
        line = (json.dumps(record) + "\n").encode()
        try:
            fd = os.open(self.log_json, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line)  # one write of one line: records of concurrent runs do not interleave
            finally:
                os.close(fd)
        except OSError as exc:
            raise OutputError(f"{self.log_json}: cannot append the JSON log: {exc.strerror}") from None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class TrainRun(TrainerCallback):
    """Checkpoints (each epoch end, every ``checkpoint_steps`` steps), epoch rows, the best epoch
    (dev F1), early stopping after ``patience`` epochs without improvement, and progress output.

    At every checkpoint its state goes into the checkpoint (:meth:`state`), last; a resumed run
    :meth:`restore`\\ s it, so rows, losses and the best epoch come out as in an uninterrupted run.
    """

    def __init__(
        self, *, work: str, steps_per_epoch: int, checkpoint_steps: int, select: str, patience: int | None,
        report: Report,
    ) -> None:
        self.work = work
        self.steps_per_epoch = steps_per_epoch
        self.checkpoint_steps = checkpoint_steps
        self.select = select
        self.patience = patience
        self.report = report
        self.rows: list[dict] = []
        self.best: dict | None = None  # {"epoch", "step", "f1"} of the best dev F1 so far
        self.bad_epochs = 0
        self.stopped_early: dict | None = None
        self.finished = False
        self.epoch_loss = None  # sum of this epoch's step losses (a device tensor while training)
        self.epoch_steps = 0
        self.total_loss = 0.0
        self.total_steps = 0
        self.epoch_seconds = 0.0
        self.train_seconds = 0.0
        self._t = time.monotonic()
        self._eval: dict | None = None
        self._epoch_end = False

    # -- state saved in every checkpoint --
    def state(self) -> dict:
        return {
            "rows": self.rows, "best": self.best, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "finished": self.finished, "epoch_loss": self._epoch_loss_value(), "epoch_steps": self.epoch_steps,
            "total_loss": self.total_loss, "total_steps": self.total_steps, "epoch_seconds": self.epoch_seconds,
            "train_seconds": self.train_seconds,
        }

    def restore(self, state: dict) -> None:
        for key in ("rows", "best", "bad_epochs", "stopped_early", "finished", "epoch_steps", "total_loss",
                    "total_steps", "epoch_seconds", "train_seconds"):
            setattr(self, key, state[key])
        self.epoch_loss = state["epoch_loss"] if self.epoch_steps else None

    def _epoch_loss_value(self) -> float | None:
        return None if self.epoch_loss is None else float(self.epoch_loss)

    def _clock(self) -> None:
        now = time.monotonic()
        self.epoch_seconds += now - self._t
        self.train_seconds += now - self._t
        self._t = now

    def add_loss(self, loss) -> None:
        self.epoch_loss = loss if self.epoch_loss is None else self.epoch_loss + loss
        self.epoch_steps += 1

    def running_loss(self) -> float | None:
        return None if self.epoch_loss is None else float(self.epoch_loss) / self.epoch_steps

    def check_loss(self, args, state) -> None:
        """Stop with :class:`TrainingDiverged` when the loss is no longer finite (the sum of this
        epoch's losses: non-negative, so it is finite exactly when each of them is)."""
        value = self._epoch_loss_value()
        if value is None or math.isfinite(value):
            return
        where = "at" if self._every_step(args) else "by"  # on a GPU the loss is looked at every CHECK_EVERY steps
        raise TrainingDiverged(
            f"the training loss is {value} {where} step {state.global_step} (epoch {state.epoch or 0:.2f})",
            args.learning_rate, bool(args.bf16),
        )

    @staticmethod
    def _every_step(args) -> bool:
        return args.device.type == "cpu"  # (reading a GPU loss waits for the GPU: not at every step there)

    # -- Trainer events --
    def on_train_begin(self, args, state, control, **kw):
        self._t = time.monotonic()
        self.report.start(state.max_steps, state.global_step)

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        if self._every_step(args) or step % CHECK_EVERY == 0:
            self.check_loss(args, state)
        self.report.step(self.running_loss)
        if (
            self.checkpoint_steps
            and step % self.checkpoint_steps == 0
            and step % self.steps_per_epoch
            and step < state.max_steps
        ):
            control.should_save = True  # (an epoch's last step is saved at the epoch end)
        return control

    def on_epoch_end(self, args, state, control, **kw):
        self._epoch_end = True
        control.should_save = True
        return control

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self._eval = metrics

    def on_save(self, args, state, control, **kw):
        self.check_loss(args, state)  # never a checkpoint of a diverged run
        self._clock()
        checkpoint = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        row = None
        if self._epoch_end:
            self._epoch_end = False
            row = self._finish_epoch(state, checkpoint)
            if self.stopped_early:
                control.should_training_stop = True
        self.finished = bool(control.should_training_stop) or state.global_step >= state.max_steps
        work_folder.commit_checkpoint(checkpoint, self.state())
        work_folder.prune(self.work, keep=checkpoint, best_step=self.best["step"] if self.best and self.select == "best" else None)
        if row is not None:
            record = {**row, "steps": state.max_steps, "best_epoch": self.best["epoch"] if self.best else None}
            self.report.epoch(row, record)
        stop_for_tests(f"checkpoint-{state.global_step}")
        return control

    def on_train_end(self, args, state, control, **kw):
        self.report.close()

    def _finish_epoch(self, state, checkpoint: str) -> dict:
        loss = self._epoch_loss_value()
        row = {
            "epoch": round(state.epoch or 0.0, 2),
            "step": state.global_step,
            "train_loss": None if loss is None else loss / max(1, self.epoch_steps),
        }
        if self._eval is not None:
            m, self._eval = self._eval, None
            row.update(precision=m["eval_precision"], recall=m["eval_recall"], f1=m["eval_f1"], accuracy=m["eval_accuracy"])
        row["seconds"] = round(self.epoch_seconds, 1)
        self.rows.append(row)
        self.total_loss += loss or 0.0
        self.total_steps += self.epoch_steps
        self.epoch_loss, self.epoch_steps, self.epoch_seconds = None, 0, 0.0
        if "f1" in row:
            if self.best is None or row["f1"] > self.best["f1"]:
                self.best = {"epoch": row["epoch"], "step": row["step"], "f1": row["f1"]}
                self.bad_epochs = 0
                if self.select == "best":
                    work_folder.save_best(checkpoint, self.work, row["step"])
            else:
                self.bad_epochs += 1
                if self.patience and self.bad_epochs >= self.patience:
                    self.stopped_early = {"epoch": row["epoch"], "patience": self.patience}
        return row
