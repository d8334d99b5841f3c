"""What a training shows while it runs: the epoch table (header, one row per epoch, the whole table)."""

from __future__ import annotations

__all__ = ["table_header", "epoch_row", "format_epochs"]


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
