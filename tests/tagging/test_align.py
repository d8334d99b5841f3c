"""Alignment: windows, ownership, document context, batch plans (pure functions, no model)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from nerbatch.core.record import Sentence
from nerbatch.tagging.align import IGNORE, Feature, Specials, assign, features_for, label_ids, with_context
from nerbatch.tagging.batching import plan_batches

SPECIALS = Specials(prefix=(101,), suffix=(102,))


def pieces_of(sizes: list[int]) -> list[list[int]]:
    out, nxt = [], 1000
    for n in sizes:
        out.append(list(range(nxt, nxt + n)))
        nxt += n
    return out


def owners(feats: list[Feature]) -> list[int]:
    return sorted(w for f in feats for w in f.words)


def test_short_sentence_is_one_feature_with_specials():
    pieces = pieces_of([1, 2, 0, 1])
    [f] = features_for(0, pieces, SPECIALS, 16)
    assert f.input_ids == [101, 1000, 1001, 1002, 1003, 102]
    assert f.words == [0, 1, 3]  # word 2 has no subwords
    assert f.positions == [1, 2, 4]


def test_long_sentence_windows_cover_every_word_once():
    pieces = pieces_of([1, 3, 2] * 1000)  # 3,000 words, 6,000 subwords
    feats = features_for(0, pieces, SPECIALS, 64)
    assert len(feats) > 100
    assert owners(feats) == list(range(3000))
    for f in feats:
        assert len(f.input_ids) <= 64
        assert f.input_ids[0] == 101 and f.input_ids[-1] == 102
        for w, pos in zip(f.words, f.positions):
            assert f.input_ids[pos] == pieces[w][0]  # the first subword of the word


def test_window_owner_has_context_on_both_sides():
    pieces = pieces_of([1] * 200)
    feats = features_for(0, pieces, SPECIALS, 42, stride=20)
    for f in feats[1:-1]:
        for pos in f.positions:
            assert 8 <= pos <= len(f.input_ids) - 9  # never at the edge of an inner window


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=300), st.integers(8, 70), st.one_of(st.none(), st.integers(1, 80)))
def test_every_word_with_subwords_is_owned_exactly_once(sizes, max_length, stride):
    pieces = pieces_of(sizes)
    feats = features_for(7, pieces, SPECIALS, max_length, stride)
    assert owners(feats) == [w for w, n in enumerate(sizes) if n]
    assert all(f.sent == 7 and len(f.input_ids) <= max_length for f in feats)


def test_context_fills_budget_and_labels_only_target():
    pieces = pieces_of([2, 2])
    left, right = list(range(1, 40)), list(range(500, 540))
    [f] = features_for(0, pieces, SPECIALS, 20, left=left, right=right)
    assert len(f.input_ids) == 20
    target_start = f.positions[0]
    assert f.input_ids[target_start : target_start + 4] == [1000, 1001, 1002, 1003]
    assert f.input_ids[1:target_start] == left[-(target_start - 1) :]  # nearest left context
    labels = label_ids(f, ["B-PER", "I-PER"], {"O": 0, "B-PER": 1, "I-PER": 2})
    assert [i for i, lab in enumerate(labels) if lab != IGNORE] == f.positions
    assert [labels[p] for p in f.positions] == [1, 2]


def test_context_uses_other_side_when_one_is_short():
    [f] = features_for(0, pieces_of([2]), SPECIALS, 12, left=[1, 2], right=list(range(500, 520)))
    assert f.input_ids == [101, 1, 2, 1000, 1001, 500, 501, 502, 503, 504, 505, 102]


def _sents(docs: list[tuple[str | None, int]]):
    items = []
    nxt = 1
    for i, (doc, n) in enumerate(docs):
        toks = [f"w{i}"] * n
        items.append((Sentence(tokens=toks, doc_id=doc, index=i), [[nxt + k] for k in range(n)]))
        nxt += 100
    return items


def test_with_context_stays_inside_the_document():
    items = _sents([("a", 3), ("a", 3), ("b", 3), ("b", 3), (None, 3)])
    out = list(with_context(iter(items), budget=10))
    assert [s.index for s, *_ in out] == [0, 1, 2, 3, 4]
    (_, _, l0, r0), (_, _, l1, r1), (_, _, l2, r2), (_, _, l3, r3), (_, _, l4, r4) = out
    assert l0 == [] and r0 == [101, 102, 103]
    assert l1 == [1, 2, 3] and r1 == []
    assert l2 == [] and r2 == [301, 302, 303]
    assert l3 == [201, 202, 203] and r3 == []
    assert l4 == [] and r4 == []


def test_with_context_is_bounded_and_exact_on_long_documents():
    items = _sents([("d", 4)] * 50)
    out = list(with_context(iter(items), budget=6))
    for i, (_, _, left, right) in enumerate(out):
        flat = [t for _, p in items for t in (x[0] for x in p)]
        start = 4 * i
        assert left == flat[max(0, start - 6) : start]
        assert right == flat[start + 4 : start + 10]


def test_assign_gives_outside_to_words_without_subwords():
    f = Feature(0, [101, 5, 6, 102], [1, 2], [0, 2])
    tags, scores = assign(3, [(f, [1, 2], [0.9, 0.8])], ["O", "B-PER", "I-PER"])
    assert tags == ["B-PER", "O", "I-PER"]
    assert scores == [0.9, 1.0, 0.8]


def test_plan_batches_respects_budget_and_covers_all():
    lengths = [5, 60, 7, 7, 30, 200, 12, 3] * 20
    batches = plan_batches(lengths, max_tokens=256, max_batch=16)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        assert len(b) <= 16
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 256
    assert plan_batches(lengths, 256, 16) == batches  # deterministic


def test_plan_batches_minimises_padding_plus_batch_cost():
    import itertools
    import random

    from nerbatch.tagging.batching import BATCH_COST

    rng = random.Random(3)
    for _ in range(200):
        n = rng.randint(1, 8)
        lengths = [rng.choice([2, 3, 5, 9, 17, 40, 90, 150]) for _ in range(n)]
        max_tokens, max_batch = rng.choice([64, 200, 1000]), rng.randint(1, 5)
        got = plan_batches(lengths, max_tokens, max_batch)

        def cost(batches, lengths=lengths):
            return sum(max(lengths[i] for i in b) * len(b) + BATCH_COST for b in batches)

        def ok(b, lengths=lengths, max_tokens=max_tokens, max_batch=max_batch):
            return len(b) <= max_batch and (len(b) == 1 or max(lengths[i] for i in b) * len(b) <= max_tokens)

        order = sorted(range(n), key=lengths.__getitem__)
        best = None
        for cuts in itertools.product([False, True], repeat=n - 1):  # every split of the sorted rows
            bounds = [0] + [k + 1 for k, c in enumerate(cuts) if c] + [n]
            plan = [order[a:b] for a, b in zip(bounds, bounds[1:])]
            if all(ok(b) for b in plan):
                best = cost(plan) if best is None else min(best, cost(plan))
        assert sorted(i for b in got for i in b) == list(range(n))
        assert all(ok(b) for b in got)
        assert cost(got) == best


def test_plan_batches_pads_little_on_sentence_like_lengths():
    import random

    rng = random.Random(0)
    lengths = [max(3, int(rng.lognormvariate(3.0, 0.6))) for _ in range(2048)]
    batches = plan_batches(lengths, 4096, 128)
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert 1 - sum(lengths) / padded < 0.06


def _reference_plan(lengths, max_tokens, max_batch, batch_cost):
    """plan_batches' rule written plainly: the cheapest cut of the length-sorted rows (padded size plus
    batch_cost a batch), batches within both budgets, the largest batch among equal costs."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    ls = [lengths[i] for i in order]
    best, back = [0], [0]
    for j in range(1, len(ls) + 1):
        width = ls[j - 1]
        rows = min(max(1, max_batch), max(1, max_tokens // max(1, width)), j)
        costs = [(best[i] + width * (j - i) + batch_cost, i) for i in range(j - rows, j)]
        cost, i = min(costs)  # ties: the smallest i, the largest batch
        best.append(cost)
        back.append(i)
    out, j = [], len(ls)
    while j > 0:
        out.append(order[back[j]:j])
        j = back[j]
    return out[::-1]


@given(
    lengths=st.lists(st.one_of(st.integers(1, 70), st.integers(1, 8), st.just(600)), max_size=200),
    max_tokens=st.sampled_from([64, 512, 4096]), max_batch=st.sampled_from([1, 3, 128]),
    batch_cost=st.sampled_from([0, 128, 1000]),
)
def test_plan_batches_is_the_cheapest_cut(lengths, max_tokens, max_batch, batch_cost):
    assert plan_batches(lengths, max_tokens, max_batch, batch_cost) == _reference_plan(lengths, max_tokens, max_batch, batch_cost)
