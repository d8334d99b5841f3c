"""Entity scores, the isotonic calibration map, and --min-score on tag sequences."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from nerbatch.core.calibration import (
    Calibration,
    apply_min_score,
    calibrate_scores,
    entity_outcomes,
    entity_scores,
    expected_calibration_error,
    fit,
    reliability,
)
from nerbatch.core.schemes import allowed_transitions, conll_chunks, is_well_formed


def test_entity_score_is_the_mean_of_its_words_scores():
    pred = ["B-PER", "I-PER", "O", "B-LOC"]
    assert entity_scores(pred, [0.9, 0.6, 0.99, 0.7]) == [("PER", 0, 2, 0.75), ("LOC", 3, 4, 0.7)]
    assert entity_scores(pred, None) == [("PER", 0, 2, None), ("LOC", 3, 4, None)]


def test_fit_is_monotone_and_reaches_the_fraction_correct_on_held_out_data():
    """Over-confident scores (P(correct) = score cubed): the fitted map brings the held-out ECE
    from about 0.25 to under 0.03."""
    rng = random.Random(0)

    def draw(n):
        xs = [round(rng.random(), 4) for _ in range(n)]
        return xs, [rng.random() < x**3 for x in xs]

    xs, ys = draw(5000)
    cal = fit(xs, ys)
    assert list(cal.calibrated) == sorted(cal.calibrated) and list(cal.raw) == sorted(cal.raw)
    tx, ty = draw(5000)
    assert expected_calibration_error(tx, ty) > 0.2
    assert expected_calibration_error([cal(x) for x in tx], ty) < 0.03


def test_the_map_is_flat_outside_its_points_linear_between_and_round_trips_through_json():
    cal = Calibration((0.5, 0.7, 0.9), (0.2, 0.4, 0.8))
    assert [cal(0.1), cal(0.5), cal(0.6), cal(0.8), cal(1.0)] == pytest.approx([0.2, 0.2, 0.3, 0.6, 0.8])
    again = Calibration.from_json(json.loads(json.dumps(cal.to_json())))
    assert again == cal
    for bad in ({"raw": [0.5, 0.4], "calibrated": [0.1, 0.2]}, {"raw": [0.5], "calibrated": [1.5]},
                {"raw": [], "calibrated": []}, {"raw": [0.1]}, [0.1], {"raw": ["x"], "calibrated": [0.1]}):
        with pytest.raises(ValueError):
            Calibration.from_json(bad)


def test_calibrated_word_scores_give_each_entity_its_mapped_mean():
    cal = Calibration((0.0, 1.0), (0.0, 0.5))
    pred = ["B-PER", "I-PER", "O", "B-LOC"]
    out = calibrate_scores(pred, [0.9, 0.6, 0.99, 0.7], cal)
    assert out == [0.375, 0.375, 0.99, 0.35]
    assert [s for *_, s in entity_scores(pred, out)] == [0.375, 0.35]


def test_outcomes_are_exact_matches_of_type_and_both_ends():
    gold = ["B-PER", "I-PER", "O", "B-LOC", "B-ORG"]
    pred = ["B-PER", "I-PER", "O", "B-ORG", "B-ORG"]
    assert entity_outcomes(gold, pred, [0.9, 0.9, 1, 0.5, 0.8]) == [(0.9, True), (0.5, False), (0.8, True)]
    # IOB1 gold (I-X starts an entity) is read by the same chunk rules
    assert entity_outcomes(["I-PER", "I-PER"], ["B-PER", "I-PER"], [1, 1]) == [(1.0, True)]


def test_reliability_bins_and_ece():
    table = reliability([0.05, 0.95, 0.95, 1.0], [False, True, False, True])
    assert [(r["low"], r["entities"]) for r in table] == [(0.0, 1), (0.9, 3)]
    assert table[1]["accuracy"] == pytest.approx(2 / 3)
    assert expected_calibration_error([0.05, 0.95, 0.95, 1.0], [False, True, False, True]) == pytest.approx(
        (1 * 0.05 + 3 * abs(2 / 3 - (0.95 + 0.95 + 1.0) / 3)) / 4
    )


def _sequences(alphabet, longest):
    for n in range(1, longest + 1):
        yield from itertools.product(alphabet, repeat=n)


@pytest.mark.parametrize("labels", [
    ["O", "B-A", "I-A", "B-B", "I-B"],
    ["O", "B-A", "I-A", "E-A", "S-A", "S-B"],
])
def test_min_score_keeps_well_formed_sequences_well_formed(labels):
    """Every sequence of up to 5 tags, every choice of entities to drop: the kept entities are the
    input's, dropped words are O, and a sequence the scheme allows (IOB2 / IOBES) stays allowed:
    no I-X after O."""
    allowed, start, end = allowed_transitions(labels)
    index = {tag: i for i, tag in enumerate(labels)}
    checked = 0
    for seq in _sequences(labels, 5):
        chunks = conll_chunks(seq)
        well_formed = is_well_formed([index[t] for t in seq], allowed, start, end)
        for drop in itertools.product((True, False), repeat=len(chunks)):
            scores = [0.99] * len(seq)
            for (_, a, b), dropped in zip(chunks, drop):
                scores[a:b] = [0.2 if dropped else 0.95] * (b - a)
            tags, new_scores, judged = apply_min_score(seq, scores, 0.5)
            kept = [c for c, dropped in zip(chunks, drop) if not dropped]
            assert conll_chunks(tags) == kept, (seq, drop, tags)
            assert [j.status == "dropped" for j in judged] == list(drop)
            for (_, a, b), dropped in zip(chunks, drop):
                if dropped:
                    assert tags[a:b] == ["O"] * (b - a) and new_scores[a:b] == [0.8] * (b - a)
            if well_formed:
                assert is_well_formed([index[t] for t in tags], allowed, start, end), (seq, drop, tags)
            checked += 1
    assert checked > 1000


def test_min_score_repairs_the_start_of_an_entity_that_followed_a_dropped_one():
    """argmax output B-PER I-LOC (two entities): dropping PER leaves B-LOC, not an I-LOC after O."""
    tags, _, _ = apply_min_score(["B-PER", "I-LOC"], [0.2, 0.9], 0.5)
    assert tags == ["O", "B-LOC"]
    tags, _, judged = apply_min_score(["B-PER", "I-PER", "O"], [0.55, 0.55, 1.0], 0.5)
    assert tags == ["B-PER", "I-PER", "O"] and judged[0].status == "borderline"
