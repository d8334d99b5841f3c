"""Which training windows go into which batch: length-grouped batches (less padding, same randomness)."""

from __future__ import annotations

__all__ = ["length_grouped_batches"]


def length_grouped_batches(lengths: list[int], batch_size: int, *, pool: int, seed: int) -> list[list[int]]:
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
