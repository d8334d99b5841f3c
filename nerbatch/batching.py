"""Length-sorted, token-budgeted batches over a bounded window of the stream, and a background producer.

Sorting happens only inside a block of the stream (``block`` sentences), so memory stays flat;
the tagger restores input order per block before anything is written.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

T = TypeVar("T")


def plan_batches(lengths: Sequence[int], max_tokens: int, max_batch: int) -> list[list[int]]:
    """Group indexes into batches of similar length.

    A batch's padded size (longest row x rows) stays within ``max_tokens`` and its row count within
    ``max_batch``; a single row longer than the budget still gets its own batch. The order is stable
    (equal lengths keep input order), so the plan is deterministic.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batches: list[list[int]] = []
    cur: list[int] = []
    cur_max = 0
    for i in order:
        n = lengths[i]
        widest = max(cur_max, n)
        if cur and (widest * (len(cur) + 1) > max_tokens or len(cur) >= max_batch):
            batches.append(cur)
            cur, widest = [], n
        cur.append(i)
        cur_max = widest
    if cur:
        batches.append(cur)
    return batches


def chunked(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to ``size`` consecutive items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_DONE = object()


def background(source: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Run the ``source`` generator in a thread, ``depth`` items ahead of the consumer.

    Exceptions raised by the source are re-raised in the consumer; if the consumer stops early,
    the thread is told to stop and is joined. Used so reading and tokenising overlap with the model.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for item in source():
                if not put((True, item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put((False, exc))
            return
        put((True, _DONE))

    thread = threading.Thread(target=run, name="nerbatch-producer", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
