"""Issue #26: `nerbatch tag --label-map` renames, merges and drops predicted types in every output format."""

from __future__ import annotations

import json
import re
from collections import Counter

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.labelmap import load_label_map
from nerbatch.core.schemes import conll_chunks
from nerbatch.errors import InputError

from ..conftest import SAMPLE

# rename PER, merge LOC and ORG into one type, drop MISC
MAP = "PER\tPERSON\nLOC\tPLACE_OR_ORG\nORG\tPLACE_OR_ORG\nMISC\tO\n"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def conll_preds(path) -> list[list[str]]:
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if cur:
                sents.append(cur)
            cur = []
        else:
            cur.append(line.split()[-1])
    return sents + ([cur] if cur else [])


def jsonl_preds(path) -> list[list[str]]:
    return [json.loads(x)["pred_tags"] for x in path.read_text(encoding="utf-8").splitlines()]


def html_labels(path) -> Counter:
    return Counter(re.findall(r"<span>([^<]*)</span></mark>", path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def unmapped(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("plain")
    out = {}
    for ext in ("conll", "jsonl", "parquet", "html"):
        path = folder / f"out.{ext}"
        res = run("tag", str(SAMPLE / "test.conll"), "-o", str(path), "--model", tiny_model, "-q")
        assert res.exit_code == 0, res.output
        out[ext] = path
    return out


def test_every_output_format_carries_the_mapped_types(tiny_model, tmp_path, unmapped):
    lm_path = tmp_path / "map.tsv"
    lm_path.write_text(MAP, encoding="utf-8")
    lm = load_label_map(str(lm_path))
    before = conll_preds(unmapped["conll"])
    types = Counter(t for s in before for t, _, _ in conll_chunks(s))
    assert types["PER"] and types["MISC"] and types["LOC"] and types["ORG"]  # the map renames, merges and drops here
    expected = [lm.apply(s) for s in before]
    outs = {}
    for ext in ("conll", "jsonl", "parquet", "html"):
        outs[ext] = tmp_path / f"mapped.{ext}"
        res = run("tag", str(SAMPLE / "test.conll"), "-o", str(outs[ext]), "--model", tiny_model, "-q", "--label-map", str(lm_path))
        assert res.exit_code == 0, res.output
    assert conll_preds(outs["conll"]) == expected
    assert jsonl_preds(outs["jsonl"]) == expected
    assert pq.read_table(outs["parquet"]).column("pred_tags").to_pylist() == expected
    # the scores stay those of the words; entities keep their spans, dropped ones are gone
    plain_rows = [json.loads(x) for x in unmapped["jsonl"].read_text(encoding="utf-8").splitlines()]
    rows = [json.loads(x) for x in outs["jsonl"].read_text(encoding="utf-8").splitlines()]
    for a, b in zip(plain_rows, rows):
        kept = [e for e in a["entities"] if e["label"] != "MISC"]
        assert [(e["start"], e["end"], e["score"]) for e in b["entities"]] == [(e["start"], e["end"], e["score"]) for e in kept]
        names = {"PER": "PERSON", "LOC": "PLACE_OR_ORG", "ORG": "PLACE_OR_ORG"}
        assert [e["label"] for e in b["entities"]] == [names[e["label"]] for e in kept]
    got = html_labels(outs["html"])
    assert got == Counter({"PERSON": types["PER"], "PLACE_OR_ORG": types["LOC"] + types["ORG"]})
    assert html_labels(unmapped["html"])["MISC"] == types["MISC"]


def test_resume_sees_a_changed_map(tiny_model, tmp_path, unmapped):
    """An output made with another map (or none) is not up to date for --resume."""
    out = tmp_path / "o.conll"
    lm = tmp_path / "m.json"
    lm.write_text('{"MISC": "O"}', encoding="utf-8")
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q", "--resume").exit_code == 0
    assert conll_preds(out) == conll_preds(unmapped["conll"])
    assert run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q", "--resume",
               "--label-map", str(lm)).exit_code == 0
    assert not any(t.endswith("-MISC") for s in conll_preds(out) for t in s)


def test_a_type_the_model_does_not_have_is_exit_2(tiny_model, tmp_path):
    lm = tmp_path / "m.tsv"
    lm.write_text("PER\tPERSON\nPERSON\tPER\n", encoding="utf-8")
    out = tmp_path / "o.jsonl"
    res = run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "--label-map", str(lm))
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"Error: {lm}:2: the label map maps 'PERSON', a type the model {tiny_model} does not have "
        "(its types: LOC, MISC, ORG, PER; fix the map or pick another)"
    ]
    assert not out.exists()
    # the shipped OntoNotes map on a CoNLL model: the same error, at the map's name and line
    res = run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "--label-map", "ontonotes-conll")
    assert res.exit_code == 2 and "ontonotes-conll:4: the label map maps 'PERSON'" in res.stderr
    # a malformed map: exit 2 before the model is even read
    lm.write_text("PER\tB-PERSON\n", encoding="utf-8")
    res = run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "--label-map", str(lm))
    assert res.exit_code == 2 and f"{lm}:1: the target type 'B-PERSON' has a tag prefix" in res.stderr
    assert not out.exists()


def test_the_python_tagger_applies_and_checks_the_map(tiny_model):
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    lm = load_label_map("wnut17-conll")
    with pytest.raises(InputError, match="maps 'person', a type the model"):
        Tagger(tiny_model, TaggerOptions(device="cpu", label_map=lm))
    drop_all = load_label_map_from({"PER": "O", "LOC": "O", "ORG": "O", "MISC": "O"})
    tagged = Tagger(tiny_model, TaggerOptions(device="cpu", label_map=drop_all)).tag_tokens([["Turku", "is", "in", "Finland"]] * 3)
    assert all(t.tags == ["O"] * 4 and t.entities == [] for t in tagged)


def load_label_map_from(mapping: dict):
    from nerbatch.core.labelmap import LabelMap

    return LabelMap("inline", tuple(mapping.items()), (None,) * len(mapping))
