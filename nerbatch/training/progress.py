"""What a training shows while it runs: the epoch table (header, one row per epoch, the whole table),
and :class:`Report`, which shows it (a progress bar, table rows, JSON log records)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime, timezone

from ..errors import OutputError

__all__ = ["table_header", "epoch_row", "format_epochs", "Report"]


def table_header(has_dev: bool) -> str:
    if has_dev:
        return f"{'epoch':>5}  {'loss':>8}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'accuracy':>8}  {'seconds':>7}"
    return f"{'epoch':>5}  {'loss':>8}  {'seconds':>7}"


def epoch_row(r: dict) -> str:
    """One line of the per-epoch table (dev columns when the row has dev scores)."""
    loss = r.get("train_loss")
    loss = float("nan") if loss is None else loss
    if "f1" in r:
        return (
            f"{r['epoch']:>5.1f}  {loss:>8.4f}  {100 * r['precision']:>9.2f}  {100 * r['recall']:>7.2f}  "
            f"{100 * r['f1']:>7.2f}  {100 * r['accuracy']:>8.2f}  {r['seconds']:>7.0f}"
        )
    return f"{r['epoch']:>5.1f}  {loss:>8.4f}  {r['seconds']:>7.0f}"


def format_epochs(rows: list[dict], kept_step: int | None = None) -> str:
    """The per-epoch table; with ``kept_step``, the row of the kept epoch is marked."""
    lines = [table_header(any("f1" in r for r in rows))]
    for r in rows:
        mark = "  <- kept" if kept_step is not None and r.get("step") == kept_step else ""
        lines.append(epoch_row(r) + mark)
    return "\n".join(lines)


class Report:
    """Output for people and cron: one progress bar over the steps (only on a terminal), a table
    row per finished epoch on stderr, and one JSON record per epoch appended to ``log_json``."""

    def __init__(self, *, quiet: bool, log_json: str | None, has_dev: bool, output: str) -> None:
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
        from ..io.remote import append_text, is_url

        try:
            if is_url(self.log_json):
                append_text(self.log_json, line.decode())
                return
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
