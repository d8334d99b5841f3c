"""Issue #26: `evaluate` measures entity scores against correctness (calibration error, reliability table,
precision/recall by threshold, --target-precision) and maps tag sets (--label-map, --gold-label-map)."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.record import Sentence
from nerbatch.evaluation.calibration import Calibration, format_calibration
from nerbatch.evaluation.evaluate import evaluate_files
from nerbatch.evaluation.html import render

# tokens, gold, predicted, the score of each predicted entity (in order)
# predicted entities: PER .95 right, LOC .85 right, PER .92 wrong type, LOC .15 spurious, MISC .55 wrong boundary,
# LOC .60 right: 6 found, 3 correct, 5 gold
SENTENCES = [
    (["Ann", "Lee", "in", "Oslo"], ["B-PER", "I-PER", "O", "B-LOC"], ["B-PER", "I-PER", "O", "B-LOC"], [0.95, 0.85]),
    (["Acme", "sold", "Rome"], ["B-ORG", "O", "O"], ["B-PER", "O", "B-LOC"], [0.92, 0.15]),
    (["Big", "Bang"], ["B-MISC", "I-MISC"], ["B-MISC", "O"], [0.55]),
    (["Paris"], ["B-LOC"], ["B-LOC"], [0.6]),
]
ECE = (0.15 + 0.55 + 0.40 + 0.15) / 6 + 2 / 6 * abs(0.5 - 0.935)


def _spans(pred: list[str]) -> list[tuple[str, int, int]]:
    from nerbatch.core.schemes import strict_entities

    return sorted(strict_entities(pred), key=lambda e: e[1])


def write_jsonl(path, sentences=SENTENCES, drop_score: int | None = None):
    lines = []
    for k, (tokens, gold, pred, scores) in enumerate(sentences):
        ents = [{"label": t, "start": s, "end": e, "score": sc} for (t, s, e), sc in zip(_spans(pred), scores)]
        if drop_score == k:
            del ents[0]["score"]
        lines.append(json.dumps({"tokens": tokens, "tags": gold, "pred_tags": pred, "entities": ents}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def write_parquet(path, sentences=SENTENCES):
    """The same predictions with per-word scores (``pred_scores``, as `tag` writes Parquet): an entity's words
    share its score, so their mean is the entity score."""
    rows = []
    for tokens, gold, pred, scores in sentences:
        words = [0.5] * len(tokens)
        for (_, s, e), sc in zip(_spans(pred), scores):
            words[s:e] = [sc] * (e - s)
        rows.append({"tokens": tokens, "tags": gold, "pred_tags": pred, "pred_scores": words})
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def write_conll(path, sentences=SENTENCES):
    out = []
    for tokens, gold, pred, _ in sentences:
        out.extend(f"{t} {g} {p}\n" for t, g, p in zip(tokens, gold, pred))
        out.append("\n")
    path.write_text("".join(out), encoding="utf-8")
    return str(path)


def test_hand_computed_calibration_error_bins_and_thresholds(tmp_path):
    cal = evaluate_files([write_jsonl(tmp_path / "t.jsonl")], bootstrap=0)["calibration"]
    assert (cal["entities"], cal["gold"], cal["correct"]) == (6, 5, 3)
    assert cal["ece"] == pytest.approx(ECE) == pytest.approx(0.353333, abs=1e-6)
    bins = {round(b["low"], 1): (b["count"], b["mean_score"], b["accuracy"]) for b in cal["bins"] if b["count"]}
    assert bins == {0.1: (1, pytest.approx(0.15), 0.0), 0.5: (1, pytest.approx(0.55), 0.0), 0.6: (1, pytest.approx(0.6), 1.0),
                    0.8: (1, pytest.approx(0.85), 1.0), 0.9: (2, pytest.approx(0.935), 0.5)}
    assert len(cal["bins"]) == 10 and sum(b["count"] for b in cal["bins"]) == 6
    at = {round(t["threshold"], 2): (t["kept"], t["correct"], t["precision"], t["recall"]) for t in cal["thresholds"]}
    assert len(at) == 20
    assert at[0.0] == (6, 3, 0.5, 0.6)
    assert at[0.5] == at[0.55] == (5, 3, 0.6, 0.6)  # a score equal to the threshold is kept
    assert at[0.6] == (4, 3, 0.75, 0.6)
    assert at[0.65] == (3, 2, pytest.approx(2 / 3), 0.4)
    assert at[0.95] == (1, 1, 1.0, 0.2)
    curve = cal["curve"]
    assert [p["kept"] for p in curve] == [6, 5, 4, 3, 2, 1, 0]  # one point wherever the kept count changes
    assert curve[-1]["precision"] is None and curve[-1]["threshold"] == pytest.approx(0.951)
    text = "\n".join(format_calibration(cal))
    assert "6 predicted entities, 5 gold, 3 correct" in text and "expected calibration error: 0.3533" in text
    assert "0.9-1.0           2      0.9350    0.5000" in text
    assert "0.60              4      75.00    60.00    66.67" in text


def test_parquet_per_word_scores_give_the_same_numbers(tmp_path):
    a = evaluate_files([write_jsonl(tmp_path / "t.jsonl")], bootstrap=0)["calibration"]
    b = evaluate_files([write_parquet(tmp_path / "t.parquet")], bootstrap=0)["calibration"]
    assert a == b


def test_target_precision_is_the_lowest_threshold_that_reaches_it(tmp_path):
    path = write_jsonl(tmp_path / "t.jsonl")
    t = evaluate_files([path], bootstrap=0, target_precision=0.7)["calibration"]["target"]
    assert (t["reached"], t["threshold"], t["kept"], t["precision"], t["recall"]) == (True, 0.6, 4, 0.75, 0.6)
    # precision is not monotone in the threshold: 0.85 gives 2/3, 0.92 1/2, 0.95 1/1
    t = evaluate_files([path], bootstrap=0, target_precision=0.8)["calibration"]["target"]
    assert (t["threshold"], t["kept"], t["precision"], t["recall"]) == (0.95, 1, 1.0, 0.2)
    res = CliRunner().invoke(cli, ["evaluate", path, "--target-precision", "0.7"])
    assert res.exit_code == 0, res.output
    assert "--target-precision 0.7: threshold 0.6000 keeps 4 of 6 entities: precision 75.00%, recall 60.00%" in res.stdout


def test_a_precision_no_threshold_reaches_says_so():
    cal = Calibration(target_precision=0.9)
    sent = Sentence(tokens=["Ann", "in", "Oslo"], tags=["B-PER", "O", "O"], pred=["B-PER", "O", "B-LOC"], scores=[0.5, 0.9, 0.99])
    cal.add(sent)
    result = cal.result()
    assert result["target"]["reached"] is False
    assert (result["target"]["best"]["threshold"], result["target"]["best"]["precision"]) == (0.5, 0.5)
    assert format_calibration(result)[-1] == (
        "--target-precision 0.9: no threshold reaches it; the highest precision is 50.00% (threshold 0.5000, recall 100.00%)"
    )


def test_outputs_without_scores_say_why_in_one_line(tmp_path):
    path = write_conll(tmp_path / "t.conll")
    res = CliRunner().invoke(cli, ["evaluate", path, "--target-precision", "0.9", "--json", str(tmp_path / "r.json"),
                                   "--html", str(tmp_path / "r.html")])
    assert res.exit_code == 0, res.output
    why = ("the predictions carry no entity scores (a CoNLL file has none: tag to JSONL or Parquet, "
           "or evaluate with --model)")
    assert [line for line in res.stdout.splitlines() if "calibration" in line or "threshold" in line] == [
        f"entity score calibration: omitted: {why}"
    ]
    assert json.loads((tmp_path / "r.json").read_text())["calibration"] == {"omitted": why}
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert f"Entity score calibration: omitted: {why}" in page and "reliability" not in page


def test_an_entity_without_a_score_leaves_calibration_out(tmp_path):
    path = write_jsonl(tmp_path / "t<&>.jsonl", drop_score=2)
    result = evaluate_files([path], bootstrap=0)
    assert result["calibration"] == {"omitted": f"{path}:3: this record carries no entity scores, earlier ones do"}
    page = render(result)
    assert "t&lt;&amp;&gt;.jsonl:3: this record" in page and "t<&>" not in page
    # one entity of several without its score
    two = [(["Ann", "and", "Bob"], ["B-PER", "O", "B-PER"], ["B-PER", "O", "B-PER"], [0.9, 0.8])]
    path = write_jsonl(tmp_path / "two.jsonl", two, drop_score=0)
    assert evaluate_files([path], bootstrap=0)["calibration"] == {
        "omitted": f"{path}:1: the predicted PER entity (start 0, end 1) carries no score"}


def test_model_scores_equal_those_of_its_tagged_output(tiny_model, tmp_path):
    from ..conftest import SAMPLE

    out = tmp_path / "t.jsonl"
    assert CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q"]).exit_code == 0
    from nerbatch.evaluation.evaluate import evaluate_model

    a = evaluate_model(tiny_model, [str(SAMPLE / "test.conll")], bootstrap=0, target_precision=0.01)["calibration"]
    b = evaluate_files([str(out)], bootstrap=0, target_precision=0.01)["calibration"]
    assert a["entities"] > 50 and a == b


def test_html_report_draws_the_reliability_diagram_and_the_curve(tmp_path):
    result = evaluate_files([write_jsonl(tmp_path / "t.jsonl")], bootstrap=0, target_precision=0.7)
    page = render(result)
    assert page.count("<svg") == 5  # the three of the error analysis, then reliability and precision/recall
    assert 'aria-label="reliability diagram"' in page and 'aria-label="precision and recall by threshold"' in page
    assert page.count('<rect class="bin"') == 5 and page.count('<circle class="target"') == 1
    assert "expected calibration error: 0.3533" in page
    assert "--target-precision 0.7: threshold 0.6000 keeps 4 of 6 entities" in page
    assert 'href="#scores"' in page
    import xml.etree.ElementTree as ET

    for svg in re.findall(r"<svg.*?</svg>", page, re.S):  # each figure is well-formed XML
        ET.fromstring(svg)


# --------------------------------------------------------------------------- #
# label maps
# --------------------------------------------------------------------------- #

# an OntoNotes-style model's predictions against CoNLL gold
ONTO = [
    (["Ann", "flew", "to", "Oslo", "on", "Monday"], ["B-PER", "O", "O", "B-LOC", "O", "O"],
     ["B-PERSON", "O", "O", "B-GPE", "B-DATE", "I-DATE"]),
    (["JFK", "Queens", "Danes"], ["B-LOC", "B-LOC", "B-MISC"], ["I-FAC", "I-GPE", "I-NORP"]),  # IOB1: merged types stay apart
]


def write_tagged(path, sentences):
    path.write_text("\n".join(json.dumps({"tokens": t, "tags": g, "pred_tags": p}) for t, g, p in sentences) + "\n",
                    encoding="utf-8")
    return str(path)


def test_label_map_scores_another_tag_set(tmp_path):
    path = write_tagged(tmp_path / "onto.jsonl", ONTO)
    plain = evaluate_files([path], bootstrap=0)
    assert plain["overall"]["correct"] == 0
    mapped = evaluate_files([path], bootstrap=0, label_map="ontonotes-conll")
    assert (mapped["overall"]["correct"], mapped["overall"]["predicted"], mapped["overall"]["support"]) == (5, 5, 5)
    assert sorted(mapped["per_type"]) == ["LOC", "MISC", "PER"]
    # the same map as a file of one's own, on the command line
    own = tmp_path / "map.tsv"
    own.write_text("PERSON\tPER\nGPE\tLOC\nFAC\tLOC\nNORP\tMISC\nDATE\tO\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["evaluate", path, "--label-map", str(own)])
    assert res.exit_code == 0, res.output
    assert "processed 9 tokens with 5 phrases; found: 5 phrases; correct: 5." in res.stdout


def test_gold_label_map_and_both_maps(tmp_path):
    wnut = [(["Ann", "at", "Acme"], ["B-person", "O", "B-corporation"], ["B-PER", "O", "B-ORG"])]
    path = write_tagged(tmp_path / "w.jsonl", wnut)
    r = evaluate_files([path], bootstrap=0, gold_label_map="wnut17-conll")
    assert r["overall"]["correct"] == 2 and sorted(r["per_type"]) == ["ORG", "PER"]
    # both sides into a third tag set: everything is one NAME
    to_name = tmp_path / "name.json"
    to_name.write_text(json.dumps({"PER": "NAME", "ORG": "NAME"}), encoding="utf-8")
    g = tmp_path / "g.json"
    g.write_text(json.dumps({"person": "NAME", "corporation": "NAME"}), encoding="utf-8")
    r = evaluate_files([path], bootstrap=0, label_map=str(to_name), gold_label_map=str(g))
    assert list(r["per_type"]) == ["NAME"] and r["overall"]["correct"] == 2


def test_predicted_types_the_gold_never_has_are_noted(tmp_path):
    path = write_tagged(tmp_path / "onto.jsonl", ONTO)
    lm = tmp_path / "m.tsv"
    lm.write_text("PERSON\tPER\n", encoding="utf-8")
    notes = evaluate_files([path], bootstrap=0, label_map=str(lm))["notes"]
    assert notes == ["after the label maps, predicted types the gold tags never have: DATE, FAC, GPE, NORP "
                     "(their entities all count as spurious; map them with --label-map, or to O to leave them out)"]


def test_label_map_errors_are_exit_2_one_line(tmp_path):
    path = write_tagged(tmp_path / "onto.jsonl", ONTO)
    lm = tmp_path / "m.tsv"
    report = tmp_path / "r.json"

    def run(*args):
        res = CliRunner().invoke(cli, ["evaluate", path, "--json", str(report), *args])
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr
        assert not report.exists()
        return res.stderr.strip()

    lm.write_text("PERSON\tPER\nPERSN\tPER\n", encoding="utf-8")
    assert run("--label-map", str(lm)) == (
        f"Error: {lm}:2: --label-map maps 'PERSN', a type found in neither the predictions nor the gold tags "
        "(predicted types: DATE, FAC, GPE, NORP, PERSON; gold types: LOC, MISC, PER)"
    )
    lm.write_text("person\tPER\n", encoding="utf-8")
    assert f"{lm}:1: --gold-label-map maps 'person', a type found in neither" in run("--gold-label-map", str(lm))
    assert run("--gold-label-map", "wnut17-conll").startswith(
        "Error: --gold-label-map wnut17-conll: none of its types (person, location, corporation, group, product, "
        "creative-work) is found in the predictions or the gold tags"
    )
    lm.write_text("PERSON\tB-PER\n", encoding="utf-8")
    assert run("--label-map", str(lm)) == (
        f"Error: {lm}:1: the target type 'B-PER' has a tag prefix: a label map maps types, not tags (write 'PER', not 'B-PER')"
    )
    lm.write_text('{"PERSON": "PER",\n "GPE" "LOC"}', encoding="utf-8")
    assert run("--label-map", str(lm)).startswith(f"Error: {lm}:2: invalid JSON: Expecting ':' delimiter")
    lm.write_text("PERSON\tPER\tx\n", encoding="utf-8")
    assert run("--label-map", str(lm)).startswith(f"Error: {lm}:1: expected two columns")
    assert run("--label-map", "no-such-map").startswith("Error: no label map 'no-such-map'")


def test_label_map_with_model_knows_the_models_types(tiny_model, tmp_path):
    """With --model the model's types count as predicted, found in this file or not."""
    from ..conftest import SAMPLE

    lm = tmp_path / "m.tsv"
    lm.write_text("MISC\tO\nPER\tPER\nLOC\tLOC\nORG\tORG\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["evaluate", "--model", tiny_model, str(SAMPLE / "test.conll"), "--label-map", str(lm),
                                   "--gold-label-map", str(lm), "--bootstrap", "0"])
    assert res.exit_code == 0, res.output
    assert "MISC" not in res.stdout.split("entity scores")[0]  # dropped on both sides before scoring


def test_compare_maps_both_prediction_files(tmp_path):
    a = write_tagged(tmp_path / "a.jsonl", ONTO)
    b = write_tagged(tmp_path / "b.jsonl", [(t, g, ["O"] * len(t)) for t, g, _ in ONTO])
    res = CliRunner().invoke(cli, ["evaluate", a, b, "--compare", "--label-map", "ontonotes-conll", "--bootstrap", "10"])
    assert res.exit_code == 0, res.output
    assert "processed 9 tokens with 5 phrases; found: 5 phrases; correct: 5." in res.stdout  # A, mapped
    assert "processed 9 tokens with 5 phrases; found: 0 phrases; correct: 0." in res.stdout  # B
