"""Issue #13: error classes, confusion matrix, per-document scores, bootstrap intervals, --compare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from nerbatch.cli import cli
from nerbatch.core.schemes import conll_chunks
from nerbatch.evaluation.analysis import bootstrap_interval, classify, paired_bootstrap
from nerbatch.evaluation.evaluate import compare_files, evaluate_files
from nerbatch.evaluation.scoring import Scorer, format_report, score

from ..conftest import SAMPLE
from .test_scoring import make_corpus, score_corpus

ZERO_GOLD = {"correct": 0, "type": 0, "boundary": 0, "type_boundary": 0, "missed": 0}
ZERO_PRED = {"correct": 0, "type": 0, "boundary": 0, "type_boundary": 0, "spurious": 0}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def analysis_of(gold: list[list[str]], pred: list[list[str]], **kw) -> dict:
    scorer = Scorer(**kw)
    for g, p in zip(gold, pred):
        scorer.add(g, p)
    return scorer.result()["analysis"]


def counts(base: dict, **changes: int) -> dict:
    return {**base, **changes}


# --------------------------------------------------------------------------- #
# error classes, one hand-made case each
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("gold", "pred", "gold_classes", "pred_classes"),
    [
        pytest.param(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"],
                     counts(ZERO_GOLD, correct=1), counts(ZERO_PRED, correct=1), id="correct"),
        pytest.param(["B-PER", "I-PER", "O"], ["B-ORG", "I-ORG", "O"],
                     counts(ZERO_GOLD, type=1), counts(ZERO_PRED, type=1), id="wrong-type-same-span"),
        pytest.param(["B-PER", "I-PER", "O"], ["B-PER", "O", "O"],
                     counts(ZERO_GOLD, boundary=1), counts(ZERO_PRED, boundary=1), id="right-type-wrong-boundary"),
        pytest.param(["O", "B-LOC", "O"], ["B-LOC", "I-LOC", "I-LOC"],
                     counts(ZERO_GOLD, boundary=1), counts(ZERO_PRED, boundary=1), id="boundary-too-long"),
        pytest.param(["B-PER", "I-PER", "O"], ["O", "B-LOC", "I-LOC"],
                     counts(ZERO_GOLD, type_boundary=1), counts(ZERO_PRED, type_boundary=1), id="wrong-type-and-boundary"),
        pytest.param(["B-PER", "O", "O"], ["O", "O", "O"],
                     counts(ZERO_GOLD, missed=1), ZERO_PRED, id="missed"),
        pytest.param(["O", "O", "O"], ["O", "B-MISC", "O"],
                     ZERO_GOLD, counts(ZERO_PRED, spurious=1), id="spurious"),
        # one gold entity split in two predictions: the gold one and both predictions are boundary errors
        pytest.param(["B-ORG", "I-ORG", "I-ORG"], ["B-ORG", "B-ORG", "I-ORG"],
                     counts(ZERO_GOLD, boundary=1), counts(ZERO_PRED, boundary=2), id="split"),
        # two gold entities merged into one prediction
        pytest.param(["B-LOC", "B-LOC"], ["B-LOC", "I-LOC"],
                     counts(ZERO_GOLD, boundary=2), counts(ZERO_PRED, boundary=1), id="merged"),
        # the same type wins over a larger overlap of another type
        pytest.param(["B-PER", "I-PER", "I-PER", "O"], ["B-ORG", "I-ORG", "B-PER", "I-PER"],
                     counts(ZERO_GOLD, boundary=1), counts(ZERO_PRED, type_boundary=1, boundary=1), id="type-first"),
        # conlleval chunks: I- after O starts an entity (IOB1), so this is correct
        pytest.param(["I-PER", "I-PER"], ["B-PER", "I-PER"],
                     counts(ZERO_GOLD, correct=1), counts(ZERO_PRED, correct=1), id="iob1"),
    ],
)
def test_error_class_of_each_entity(gold, pred, gold_classes, pred_classes):
    a = analysis_of([gold], [pred])
    assert a["classes"] == {"gold": gold_classes, "pred": pred_classes}
    o = score([gold], [pred])["overall"]
    assert (a["classes"]["gold"]["correct"], sum(gold_classes.values()), sum(pred_classes.values())) == (
        o["correct"], o["support"], o["predicted"],
    )
    assert a["agrees"] is True


def test_classify_partners():
    gold, pred = [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 6, 8)], [("PER", 0, 1), ("MISC", 5, 7), ("LOC", 9, 10)]
    gc, gp, pc, pp = classify(gold, pred)
    assert gc == ["boundary", "missed", "type_boundary"]
    assert gp == [("PER", 0, 1), None, ("MISC", 5, 7)]
    assert pc == ["boundary", "type_boundary", "spurious"]
    assert pp == [("PER", 0, 2), ("ORG", 6, 8), None]


def test_hand_worked_corpus_per_type_and_confusion():
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"],
        ["B-LOC", "I-LOC", "O", "B-PER", "O", "O"],
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-ORG", "O", "O"],  # PER correct, LOC as ORG, ORG missed
        ["B-LOC", "O", "O", "B-PER", "O", "B-MISC"],  # LOC boundary, PER correct, MISC spurious
    ]
    a = analysis_of(gold, pred)
    assert a["classes"]["gold"] == {"correct": 2, "type": 1, "boundary": 1, "type_boundary": 0, "missed": 1}
    assert a["classes"]["pred"] == {"correct": 2, "type": 1, "boundary": 1, "type_boundary": 0, "spurious": 1}
    assert a["per_type"]["LOC"] == {
        "gold": {"correct": 0, "type": 1, "boundary": 1, "type_boundary": 0, "missed": 0},
        "pred": {"correct": 0, "type": 0, "boundary": 1, "type_boundary": 0, "spurious": 0},
    }
    assert a["per_type"]["ORG"]["gold"]["missed"] == 1 and a["per_type"]["ORG"]["pred"]["type"] == 1
    assert a["per_type"]["MISC"]["pred"]["spurious"] == 1
    assert a["confusion"]["labels"] == ["LOC", "MISC", "ORG", "PER", "none"]
    assert a["confusion"]["matrix"] == [
        # LOC MISC ORG PER none   (predicted)
        [1, 0, 1, 0, 0],  # LOC: one boundary error (same type), one taken for ORG
        [0, 0, 0, 0, 0],  # MISC
        [0, 0, 0, 0, 1],  # ORG: missed
        [0, 0, 0, 2, 0],  # PER
        [0, 1, 0, 0, 0],  # none: the spurious MISC
    ]
    assert a["error_sentences"] == {"type": 1, "boundary": 1, "type_boundary": 0, "missed": 1, "spurious": 1}
    assert [ex["classes"] for ex in a["examples"]] == [["type", "missed"], ["boundary", "spurious"]]


def test_strict_mode_classes_follow_strict_entities():
    # strict IOB2: an I- after O is no entity, so the prediction has none
    a = analysis_of([["B-PER", "I-PER"]], [["I-PER", "I-PER"]], strict=True)
    assert a["entities"].startswith("strict")
    assert a["classes"]["gold"]["missed"] == 1 and sum(a["classes"]["pred"].values()) == 0


@pytest.mark.parametrize("style", ["iob1", "iob2", "mixed"])
@pytest.mark.parametrize("seed", range(3))
def test_classes_add_up_to_the_conlleval_counts(style, seed):
    r = score_corpus(make_corpus(style, seed))
    a, o = r["analysis"], r["overall"]
    assert a["agrees"] is True
    assert a["classes"]["gold"]["correct"] == a["classes"]["pred"]["correct"] == o["correct"]
    assert sum(a["classes"]["gold"].values()) == o["support"]
    assert sum(a["classes"]["pred"].values()) == o["predicted"]
    for t, row in r["per_type"].items():
        assert sum(a["per_type"][t]["gold"].values()) == row["support"]
        assert sum(a["per_type"][t]["pred"].values()) == row["predicted"]
        assert a["per_type"][t]["gold"]["correct"] == row["correct"]
    matrix = a["confusion"]["matrix"]
    assert [sum(row) for row in matrix[:-1]] == [row["support"] for row in r["per_type"].values()]
    assert sum(matrix[-1]) == a["classes"]["pred"]["spurious"]


_TAG = st.sampled_from(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "E-LOC", "S-PER"])


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(_TAG, _TAG), max_size=9), min_size=1, max_size=4))
def test_classes_agree_with_the_scores_for_any_tags(sentences):
    gold = [[g for g, _ in s] for s in sentences]
    pred = [[p for _, p in s] for s in sentences]
    r = score(gold, pred)
    a = r["analysis"]
    assert a["agrees"] is True
    assert sum(a["classes"]["gold"].values()) == sum(len(conll_chunks(g)) for g in gold)


# --------------------------------------------------------------------------- #
# per-document scores
# --------------------------------------------------------------------------- #

TAGGED = """-DOCSTART- -X- O O

Ann NNP B-PER B-PER
met VBD O O
Bob NNP B-PER B-PER

-DOCSTART- -X- O O

Kiel NNP B-LOC B-ORG
and CC O O
Rome NNP B-LOC O

Oslo NNP B-LOC B-LOC

-DOCSTART- -X- O O

EU NNP B-ORG B-ORG
says VBZ O B-MISC
"""


def test_per_document_scores_worst_first(tmp_path):
    path = tmp_path / "t.conll"
    path.write_text(TAGGED, encoding="utf-8")
    r = evaluate_files([str(path)], bootstrap=0)
    docs = r["analysis"]["documents"]
    assert [(d["doc"], d["line"], d["sentences"], d["support"], d["predicted"], d["correct"]) for d in docs] == [
        ("2", 9, 2, 3, 2, 1),  # F1 0.4: Kiel as ORG, Rome missed
        ("3", 17, 1, 1, 2, 1),  # F1 0.67: a spurious MISC
        ("1", 3, 1, 2, 2, 2),  # perfect
    ]
    assert docs[0]["f1"] == pytest.approx(0.4)
    assert docs[0]["errors"] == {"type": 1, "boundary": 0, "type_boundary": 0, "missed": 1, "spurious": 0}
    assert docs[1]["errors"]["spurious"] == 1 and sum(docs[2]["errors"].values()) == 0
    assert docs[0]["tokens"] == 4 + 1  # the -DOCSTART- line is a token, as conlleval counts it
    assert r["analysis"]["examples"][0]["line"] == 9 and r["analysis"]["examples"][0]["tokens"] == ["Kiel", "and", "Rome"]
    text = format_report(r)
    assert "worst documents (2 of 3):" in text


def test_jsonl_documents_come_from_doc_id(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [
        {"doc_id": "a", "tokens": ["Ann"], "tags": ["B-PER"], "pred_tags": ["B-PER"]},
        {"doc_id": "b", "tokens": ["Bob"], "tags": ["B-PER"], "pred_tags": ["O"]},
        {"doc_id": "a", "tokens": ["Kim"], "tags": ["B-PER"], "pred_tags": ["B-PER"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    docs = evaluate_files([str(path)], bootstrap=0)["analysis"]["documents"]
    assert [(d["doc"], d["sentences"], d["support"], d["correct"]) for d in docs] == [("b", 1, 1, 0), ("a", 2, 2, 2)]


# --------------------------------------------------------------------------- #
# bootstrap
# --------------------------------------------------------------------------- #


def _corpus_counts(n: int = 60, seed: int = 3):
    scorer = Scorer(bootstrap=0)
    for k, (g, p) in enumerate(make_corpus("iob2", seed, sentences=n)):
        scorer.add(g, p, doc=str(k // 4))  # 15 documents of 4 sentences
    return scorer


def test_bootstrap_is_reproducible_and_holds_the_point_estimate():
    scorer = _corpus_counts()
    unit, counts_ = scorer.analysis.unit_counts()
    assert unit == "documents" and counts_.shape == (15, 3)
    a = bootstrap_interval(counts_, 500, seed=7, unit=unit)
    assert a == bootstrap_interval(counts_, 500, seed=7, unit=unit)
    assert a != bootstrap_interval(counts_, 500, seed=8, unit=unit)
    o = scorer.result()["overall"]
    for key in ("precision", "recall", "f1"):
        lo, hi = a[key]
        assert lo < o[key] < hi, key
    assert (a["samples"], a["seed"], a["units"], a["level"]) == (500, 7, 15, 0.95)


def test_bootstrap_units_are_sentences_without_documents():
    scorer = Scorer(bootstrap=200, seed=1)
    for g, p in make_corpus("iob1", 2, sentences=25):
        scorer.add(g, p)
    ci = scorer.result()["analysis"]["bootstrap"]
    assert (ci["unit"], ci["units"], ci["samples"]) == ("sentences", 25, 200)
    assert scorer.result()["analysis"]["bootstrap"] == ci  # result() is repeatable


def test_bootstrap_sums_equal_totals_for_each_resample_of_all_units():
    from nerbatch.evaluation.analysis import resample_sums

    scorer = _corpus_counts()
    _, counts_ = scorer.analysis.unit_counts()
    o = scorer.result()["overall"]
    assert counts_.sum(axis=0).tolist() == [o["correct"], o["support"], o["predicted"]]
    sums = resample_sums(counts_, 50, 0)
    assert sums.shape == (50, 3) and (sums[:, 0] <= sums[:, 2]).all()


def test_paired_bootstrap_of_identical_predictions_gives_p_1():
    _, counts_ = _corpus_counts().analysis.unit_counts()
    res = paired_bootstrap(counts_, counts_, 300, seed=0)
    assert res["p_value"] == 1.0 and res["f1_difference"] == 0.0


def test_paired_bootstrap_sees_a_clear_difference():
    good, bad = Scorer(bootstrap=0), Scorer(bootstrap=0)
    for k, (g, p) in enumerate(make_corpus("iob2", 5, sentences=80)):
        good.add(g, g, doc=str(k // 4))
        bad.add(g, p, doc=str(k // 4))
    (_, a), (_, b) = good.analysis.unit_counts(), bad.analysis.unit_counts()
    res = paired_bootstrap(a, b, 500, seed=0)
    assert res["f1_difference"] < 0 and res["p_value"] < 0.01
    lo, hi = res["f1_difference_interval"]
    assert lo <= res["f1_difference"] <= hi < 0


# --------------------------------------------------------------------------- #
# the command line
# --------------------------------------------------------------------------- #


@pytest.fixture
def tagged(tmp_path) -> Path:
    path = tmp_path / "a.conll"
    path.write_text(TAGGED * 4, encoding="utf-8")
    return path


def test_text_report_keeps_conllevals_lines_first_and_adds_the_analysis(tagged, tmp_path):
    res = run("evaluate", tagged, "--json", tmp_path / "r.json", "--seed", "3", "--bootstrap", "200")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "processed 48 tokens with 24 phrases; found: 24 phrases; correct: 16."
    assert lines[1].startswith("accuracy: ") and lines[1].endswith("FB1:  66.67")
    for needle in ("95% CI (bootstrap over 12 documents, 200 samples, seed 3)", "error classes (conlleval chunks):",
                   "wrong type, same span", "confusion (rows: gold type", "worst documents"):
        assert needle in res.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert set(report["analysis"]) >= {"classes", "per_type", "confusion", "documents", "bootstrap", "examples"}
    assert report["analysis"]["bootstrap"]["seed"] == 3
    again = run("evaluate", tagged, "--seed", "3", "--bootstrap", "200")
    assert again.stdout == res.stdout  # reproducible
    off = run("evaluate", tagged, "--bootstrap", "0")
    assert "CI" not in off.stdout and off.stdout.splitlines()[:2] == lines[:2]


def test_compare_a_file_with_itself_gives_p_1(tagged, tmp_path):
    copy = tmp_path / "b.conll"
    copy.write_bytes(tagged.read_bytes())
    res = run("evaluate", tagged, copy, "--compare", "--json", tmp_path / "c.json")
    assert res.exit_code == 0, res.output
    assert "paired bootstrap p = 1.0000" in res.stdout
    c = json.loads((tmp_path / "c.json").read_text())
    assert c["comparison"]["p_value"] == 1.0 and c["comparison"]["unit"] == "documents"
    assert c["a"]["overall"] == c["b"]["overall"]


def test_compare_gives_the_difference(tagged, tmp_path):
    better = tmp_path / "b.conll"
    better.write_text("\n".join(
        " ".join(cols[:-1] + [cols[-2]]) if len(cols := line.split()) >= 4 else line
        for line in tagged.read_text().splitlines()
    ) + "\n")
    r = compare_files(str(tagged), str(better), bootstrap=300)
    assert r["b"]["overall"]["f1"] == 1.0
    assert r["comparison"]["f1_difference"] == pytest.approx(1.0 - r["a"]["overall"]["f1"])
    assert 0 < r["comparison"]["p_value"] < 0.05


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace("Rome NNP", "Roma NNP"), "the tokens differ ('Rome' != 'Roma')"),
        (lambda t: t.replace("Rome NNP B-LOC", "Rome NNP B-PER"), "the gold tags differ ('B-LOC' != 'B-PER')"),
        (lambda t: t[: t.rindex("-DOCSTART-")], "it has fewer sentences"),
    ],
)
def test_compare_refuses_files_of_different_gold(tagged, tmp_path, edit, needle):
    other = tmp_path / "b.conll"
    other.write_text(edit(tagged.read_text()))
    res = run("evaluate", tagged, other, "--compare")
    assert res.exit_code == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "b.conll" in lines[0], res.stderr


def test_compare_takes_two_files(tagged):
    res = run("evaluate", tagged, "--compare")
    assert res.exit_code == 2 and "two prediction files" in res.stderr


def test_tag_report_carries_the_analysis(tagged):
    # `tag --report` scores its outputs with a plain Scorer() through score_output (or FileScore on
    # the way) and prints format_report(scorer.result()): the analysis comes with it
    from nerbatch.evaluation.evaluate import score_output

    scorer = Scorer()
    score_output(str(tagged), "conll", scorer, input_fmt="conll")
    result = scorer.result()
    a = result["analysis"]
    assert sum(a["classes"]["gold"].values()) == result["overall"]["support"] == 24
    assert a["bootstrap"]["unit"] == "documents" and a["bootstrap"]["samples"] == 1000
    assert "error classes (conlleval chunks):" in format_report(result)
    b = evaluate_files([str(tagged)])["analysis"]
    for key in ("classes", "per_type", "confusion", "bootstrap", "error_sentences", "documents"):
        assert a[key] == b[key], key


def _merge_stream(seed: int):
    """Sentences with gold and perturbed predictions, documents, -DOCSTART- tokens between documents."""
    import random

    from nerbatch.io import read

    rng = random.Random(seed)
    labels = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
    out = []
    for n, sent in enumerate(s for s in read(str(SAMPLE / "train.conll")) if s.tokens):
        pred = [t if rng.random() < 0.8 else rng.choice(labels) for t in sent.tags]
        if n % 11 == 0:
            out.append((["O"], ["O"], {"sentence": False, "doc": f"d{n // 11}"}))  # a -DOCSTART- line
        out.append((sent.tags, pred, {"doc": f"d{n // 11}", "tokens": sent.tokens, "path": "x.conll", "line": n + 1}))
    return out


@pytest.mark.parametrize("strict", [False, True])
def test_scorers_merged_in_order_give_the_scores_of_one(strict):
    """Scorer.merge (the Ray engine's workers score their outputs apart): the same result, analysis,
    examples within their limit and bootstrap interval included, whatever the cut points."""
    stream = _merge_stream(3)
    one = Scorer(strict=strict, examples=5, bootstrap=200)
    for gold, pred, kw in stream:
        one.add(gold, pred, **kw)
    for cuts in ([1], [37, 38, 100], [11, 12, len(stream) - 1]):
        merged = Scorer(strict=strict, examples=5, bootstrap=200)
        for a, b in zip([0, *cuts], [*cuts, len(stream)]):
            part = Scorer(strict=strict, examples=5, bootstrap=200)
            for gold, pred, kw in stream[a:b]:
                part.add(gold, pred, **kw)
            merged.merge(part)
        assert merged.result() == one.result()
    assert one.result()["analysis"]["examples_shown"]["missed"] == 5
