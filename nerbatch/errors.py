"""Errors with exit codes; user mistakes carry a file and line so the CLI prints one clear line."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_PARTIAL = 3
EXIT_LOCKED = 75


class NerbatchError(Exception):
    """Base class for errors meant for the user (no traceback)."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message + (f" ({self.hint})" if self.hint else "")


class InputError(NerbatchError):
    """Bad input data or options: exit code 2. ``path``/``line`` locate the problem."""

    exit_code = EXIT_BAD_INPUT

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return where + super().__str__()


class ModelError(NerbatchError):
    """A model folder or hub id that cannot be used (no fast tokenizer, no labels, not found)."""

    exit_code = EXIT_BAD_INPUT


class OutputError(NerbatchError):
    """An output that cannot be written (permissions, full disk)."""

    exit_code = EXIT_BAD_INPUT


class LockedError(NerbatchError):
    """Another nerbatch run holds the output location."""

    exit_code = EXIT_LOCKED


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM.

    ``kept``: ``(partial file, sentences)`` when the output being written was kept because
    ``--resume`` will continue it from that many sentences; None when nothing was left behind.
    """

    def __init__(self, signum: int, kept: tuple[str, int] | None = None) -> None:
        super().__init__(signum)
        self.signum = signum
        self.kept = kept

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class TrainingDiverged(InputError):
    """The training loss or the trained weights became NaN or infinite (exit 2); nothing is written
    and the work folder is removed (resuming would diverge again)."""

    def __init__(self, what: str, lr: float, bf16: bool) -> None:
        tips = [f"a lower --lr (this run: {lr:g})", "a larger --warmup"] + (["--no-bf16"] if bf16 else [])
        super().__init__(f"training diverged: {what}; no model was written",
                         hint="try " + ", ".join(tips[:-1]) + " or " + tips[-1] + ", and check the training data")
