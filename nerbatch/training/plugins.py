"""The parts of a training run that react to the Trainer's events, one job each (after flair's
trainer plugins): :class:`Epochs` (loss sums, seconds, one row per finished epoch), :class:`LossGuard`
(stop when the loss is no longer finite), :class:`Selection` (the best dev F1, early stopping),
:class:`Checkpoints` (when to save, the checkpoint completed with every plugin's state, old ones
pruned) and :class:`Progress` (the bar, the epoch table, the JSON log). :class:`Plugins` composes them
in the order their ``on_save`` must run.

Each plugin's :meth:`Plugin.state` goes into every checkpoint's ``nerbatch-state.json`` (one flat
dict, written last) and a resumed run :meth:`Plugin.restore`\\ s it, so rows, losses, the best epoch
and early stopping come out as in an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

from transformers import TrainerCallback

from ..errors import TrainingDiverged
from . import output as work_folder
from .options import TrainingJob
from .progress import Report

__all__ = ["CHECK_EVERY", "Plugin", "Epochs", "LossGuard", "Selection", "Checkpoints", "Progress", "Plugins"]

CHECK_EVERY = 32  # on a GPU, steps between looks at the loss (each waits for the GPU); on the CPU: every step


def every_step(args) -> bool:
    """The loss is looked at after every step (CPU): reading a GPU loss waits for the GPU."""
    return args.device.type == "cpu"


def checkpoint_dir(args, state) -> str:
    return os.path.join(args.output_dir, f"checkpoint-{state.global_step}")


class Plugin(TrainerCallback):
    """A Trainer callback whose state is saved in every checkpoint (its keys, none by default)."""

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        """Take back what :meth:`state` saved."""


class Epochs(Plugin):
    """This epoch's loss sum (fed by the Trainer at each step) and seconds, the run's totals, and a
    row per finished epoch (loss, dev scores, seconds); :attr:`row` is the row finished at the save
    being handled, else None."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.epoch_loss = None  # sum of this epoch's step losses (a device tensor while training)
        self.epoch_steps = 0
        self.total_loss = 0.0
        self.total_steps = 0
        self.epoch_seconds = 0.0
        self.train_seconds = 0.0
        self.row: dict | None = None
        self._t = time.monotonic()
        self._eval: dict | None = None
        self._epoch_end = False

    def state(self) -> dict:
        return {
            "rows": self.rows, "epoch_loss": self.loss_sum(), "epoch_steps": self.epoch_steps,
            "total_loss": self.total_loss, "total_steps": self.total_steps, "epoch_seconds": self.epoch_seconds,
            "train_seconds": self.train_seconds,
        }

    def restore(self, state: dict) -> None:
        for key in ("rows", "epoch_steps", "total_loss", "total_steps", "epoch_seconds", "train_seconds"):
            setattr(self, key, state[key])
        self.epoch_loss = state["epoch_loss"] if self.epoch_steps else None

    def add_loss(self, loss) -> None:
        self.epoch_loss = loss if self.epoch_loss is None else self.epoch_loss + loss
        self.epoch_steps += 1

    def loss_sum(self) -> float | None:
        return None if self.epoch_loss is None else float(self.epoch_loss)

    def running_loss(self) -> float | None:
        return None if self.epoch_loss is None else float(self.epoch_loss) / self.epoch_steps

    def on_train_begin(self, args, state, control, **kw):
        self._t = time.monotonic()

    def on_epoch_end(self, args, state, control, **kw):
        self._epoch_end = True

    def on_evaluate(self, args, state, control, metrics=None, **kw):
        self._eval = metrics

    def on_save(self, args, state, control, **kw):
        now = time.monotonic()
        self.epoch_seconds += now - self._t
        self.train_seconds += now - self._t
        self._t = now
        self.row = None
        if self._epoch_end:
            self._epoch_end = False
            self.row = self._finish_epoch(state)

    def _finish_epoch(self, state) -> dict:
        loss = self.loss_sum()
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
        return row


class LossGuard(Plugin):
    """Stop with :class:`TrainingDiverged` when the loss is no longer finite (the sum of this epoch's
    losses: non-negative, so it is finite exactly when each of them is); never a checkpoint of a
    diverged run."""

    def __init__(self, epochs: Epochs) -> None:
        self.epochs = epochs

    def check(self, args, state) -> None:
        value = self.epochs.loss_sum()
        if value is None or math.isfinite(value):
            return
        where = "at" if every_step(args) else "by"  # on a GPU the loss is looked at every CHECK_EVERY steps
        raise TrainingDiverged(
            f"the training loss is {value} {where} step {state.global_step} (epoch {state.epoch or 0:.2f})",
            args.learning_rate, bool(args.bf16),
        )

    def on_step_end(self, args, state, control, **kw):
        if every_step(args) or state.global_step % CHECK_EVERY == 0:
            self.check(args, state)

    def on_save(self, args, state, control, **kw):
        self.check(args, state)


class Selection(Plugin):
    """The best epoch by dev F1 (with ``select="best"`` its weights kept as ``best-STEP`` in the work
    folder) and early stopping after ``patience`` epochs without an improvement."""

    def __init__(self, epochs: Epochs, *, work: str, select: str, patience: int | None) -> None:
        self.epochs = epochs
        self.work = work
        self.select = select
        self.patience = patience
        self.best: dict | None = None  # {"epoch", "step", "f1"} of the best dev F1 so far
        self.bad_epochs = 0
        self.stopped_early: dict | None = None

    def state(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early}

    def restore(self, state: dict) -> None:
        self.best, self.bad_epochs, self.stopped_early = state["best"], state["bad_epochs"], state["stopped_early"]

    def kept_step(self) -> int | None:
        """The step whose ``best-STEP`` folder is kept (``select="best"``), else None."""
        return self.best["step"] if self.best and self.select == "best" else None

    def on_save(self, args, state, control, **kw):
        row = self.epochs.row
        if row is None or "f1" not in row:
            return
        if self.best is None or row["f1"] > self.best["f1"]:
            self.best = {"epoch": row["epoch"], "step": row["step"], "f1": row["f1"]}
            self.bad_epochs = 0
            if self.select == "best":
                work_folder.save_best(checkpoint_dir(args, state), work=self.work, step=row["step"])
        else:
            self.bad_epochs += 1
            if self.patience and self.bad_epochs >= self.patience:
                self.stopped_early = {"epoch": row["epoch"], "patience": self.patience}
                control.should_training_stop = True


class Checkpoints(Plugin):
    """A checkpoint at each epoch end and every ``every`` steps (0: epoch ends only); at a save the
    checkpoint is completed with every plugin's state (``saved_state()``), last, and older
    checkpoints and best folders are pruned. :attr:`finished`: the last checkpoint ends the run."""

    def __init__(self, selection: Selection, *, work: str, steps_per_epoch: int, every: int) -> None:
        self.selection = selection
        self.work = work
        self.steps_per_epoch = steps_per_epoch
        self.every = every
        self.finished = False
        self.saved_state = self.state  # set by Plugins: the state of them all

    def state(self) -> dict:
        return {"finished": self.finished}

    def restore(self, state: dict) -> None:
        self.finished = state["finished"]

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        if self.every and step % self.every == 0 and step % self.steps_per_epoch and step < state.max_steps:
            control.should_save = True  # (an epoch's last step is saved at the epoch end)

    def on_epoch_end(self, args, state, control, **kw):
        control.should_save = True

    def on_save(self, args, state, control, **kw):
        self.finished = bool(control.should_training_stop) or state.global_step >= state.max_steps
        checkpoint = checkpoint_dir(args, state)
        work_folder.commit_checkpoint(checkpoint, self.saved_state())
        work_folder.prune(self.work, keep=checkpoint, best_step=self.selection.kept_step())


class Progress(Plugin):
    """The progress bar over the steps, and each finished epoch (once its checkpoint is complete) as a
    table row and a JSON log record, through ``report``."""

    def __init__(self, epochs: Epochs, selection: Selection, report: Report) -> None:
        self.epochs = epochs
        self.selection = selection
        self.report = report

    def on_train_begin(self, args, state, control, **kw):
        self.report.start(state.max_steps, state.global_step)

    def on_step_end(self, args, state, control, **kw):
        self.report.step(self.epochs.running_loss)

    def on_save(self, args, state, control, **kw):
        row = self.epochs.row
        if row is not None:
            best = self.selection.best
            self.report.epoch(row, {**row, "steps": state.max_steps, "best_epoch": best["epoch"] if best else None})

    def on_train_end(self, args, state, control, **kw):
        self.report.close()


@dataclass(frozen=True)
class Plugins:
    """The plugins of one training, in the order the Trainer calls them."""

    epochs: Epochs
    guard: LossGuard
    selection: Selection
    checkpoints: Checkpoints
    progress: Progress

    @classmethod
    def build(cls, job: TrainingJob, *, steps_per_epoch: int, report: Report) -> "Plugins":
        epochs = Epochs()
        selection = Selection(epochs, work=job.work, select=job.select, patience=job.opts.patience)
        checkpoints = Checkpoints(selection, work=job.work, steps_per_epoch=steps_per_epoch, every=job.opts.checkpoint_steps)
        plugins = cls(epochs, LossGuard(epochs), selection, checkpoints, Progress(epochs, selection, report))
        checkpoints.saved_state = plugins.state
        return plugins

    def all(self) -> list[Plugin]:
        """On a save: guard (no checkpoint of a diverged run), the epoch's row, selection and early
        stopping, the checkpoint completed, then the row shown."""
        return [self.guard, self.epochs, self.selection, self.checkpoints, self.progress]

    def state(self) -> dict:
        return {k: v for p in self.all() for k, v in p.state().items()}

    def restore(self, state: dict) -> None:
        for p in self.all():
            p.restore(state)
