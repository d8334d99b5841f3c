"""Issue #26: label maps (nerbatch.core.labelmap): load, check, apply to a tag sequence; the shipped maps."""

from __future__ import annotations

import json

import pytest

from nerbatch.core.labelmap import LabelMap, load_label_map, shipped_maps, tag_types
from nerbatch.core.schemes import conll_chunks, strict_entities
from nerbatch.errors import InputError


def make(tmp_path, text: str, name: str = "map.tsv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_two_columns_and_json_give_the_same_map(tmp_path):
    tsv = load_label_map(make(tmp_path, "# OntoNotes-ish\nPERSON\tPER\n\nGPE\tLOC\nDATE O\n"))
    js = load_label_map(make(tmp_path, '{"PERSON": "PER",\n "GPE": "LOC",\n "DATE": "O"}', "map.json"))
    assert tsv.mapping == js.mapping == {"PERSON": "PER", "GPE": "LOC", "DATE": "O"}
    assert tsv.lines == (2, 4, 5) and js.lines == (1, 2, 3)
    # a file that starts with { is JSON whatever its name; the documented shape with "about"
    doc = load_label_map(make(tmp_path, '{"about": "x", "map": {"a": "B"}}', "map.txt"))
    assert doc.mapping == {"a": "B"}


def test_apply_renames_merges_and_drops_keeping_entities_apart():
    m = LabelMap("m", (("GPE", "LOC"), ("FAC", "LOC"), ("DATE", "O"), ("PERSON", "PER")), (1, 2, 3, 4))
    tags = ["B-GPE", "I-GPE", "B-LOC", "O", "B-DATE", "I-DATE", "B-PERSON", "B-ORG", "I-ORG"]
    assert m.apply(tags) == ["B-LOC", "I-LOC", "B-LOC", "O", "O", "O", "B-PER", "B-ORG", "I-ORG"]
    # IO / IOB1 tags: an I- that starts an entity next to one it merges with becomes B-
    io = ["I-GPE", "I-GPE", "I-FAC", "I-LOC", "O", "I-FAC"]
    out = m.apply(io)
    assert out == ["I-LOC", "I-LOC", "B-LOC", "B-LOC", "O", "I-LOC"]
    assert [(t, s, e) for t, s, e in conll_chunks(out)] == [("LOC", 0, 2), ("LOC", 2, 3), ("LOC", 3, 4), ("LOC", 5, 6)]
    assert len(conll_chunks(out)) == len(conll_chunks(io))  # merged types, the same number of entities
    # a dropped entity leaves O, never an I- continuing nothing
    assert m.apply(["B-DATE", "I-DATE", "I-DATE"]) == ["O", "O", "O"]
    # IOB2 in, strict IOB2 entities out: the same spans, types mapped
    iob2 = ["B-GPE", "B-FAC", "I-FAC", "B-LOC", "I-LOC"]
    assert strict_entities(m.apply(iob2)) == {("LOC", 0, 1), ("LOC", 1, 3), ("LOC", 3, 5)}
    # not tags at all pass through untouched
    assert m.apply(["PER", "", "O"]) == ["PER", "", "O"]


def test_shipped_maps_load_by_name_and_are_documented():
    assert {"ontonotes-conll", "wnut17-conll"} <= set(shipped_maps())
    onto = load_label_map("ontonotes-conll")
    assert onto.mapping["PERSON"] == "PER" and onto.mapping["GPE"] == "LOC" and onto.mapping["NORP"] == "MISC"
    assert onto.mapping["CARDINAL"] == "O" and len(onto.pairs) == 18
    assert set(onto.mapping.values()) == {"PER", "LOC", "ORG", "MISC", "O"}
    wnut = load_label_map("wnut17-conll")
    assert wnut.apply(["B-creative-work", "I-creative-work", "B-group"]) == ["B-MISC", "I-MISC", "B-ORG"]
    from importlib import resources

    for name in shipped_maps():
        doc = json.loads(resources.files("nerbatch").joinpath("labelmaps", f"{name}.json").read_text(encoding="utf-8"))
        assert len(doc["about"]) > 100 and isinstance(doc["map"], dict)


def test_tag_types_of_model_labels():
    assert tag_types(["O", "B-PER", "I-PER", "LOC", "S-creative-work"]) == {"PER", "LOC", "creative-work"}


def test_check_sources_names_the_line():
    m = load_label_map("wnut17-conll")
    with pytest.raises(InputError) as err:
        m.check_sources({"person", "location"}, "the model x does not have")
    assert str(err.value).startswith("wnut17-conll:6: the label map maps 'corporation', a type the model x does not have")


@pytest.mark.parametrize(
    "name, text, expect",
    [
        ("m.tsv", "PER\tPERSON\nLOC\tB-LOC\n", "m.tsv:2: the target type 'B-LOC' has a tag prefix"),
        ("m.tsv", "B-PER\tPER\n", "m.tsv:1: the source type 'B-PER' has a tag prefix"),
        ("m.tsv", "PER\tPERSON\nLOC\n", "m.tsv:2: expected two columns (source type, target type), found 1"),
        ("m.tsv", "PER a b\n", "m.tsv:1: expected two columns"),
        ("m.tsv", "PER\tX\nPER\tY\n", "m.tsv:2: 'PER' is mapped twice (first on line 1)"),
        ("m.tsv", "O\tPER\n", "m.tsv:1: 'O' cannot be mapped"),
        ("m.tsv", "# nothing\n\n", "m.tsv: the label map maps nothing"),
        ("m.json", '{"PER": "P",\n "LOC": }', "m.json:2: invalid JSON"),
        ("m.json", '{"PER": "P",\n "LOC": 3}', "m.json:2: the target type must be a non-empty string, not 3"),
        ("m.json", '{"PER": "P",\n "PER": "Q"}', "m.json:2: 'PER' is mapped twice"),
        ("m.json", '["PER", "P"]', "m.json:1: a JSON label map is an object, not list"),
        ("m.json", '{"map": {"A": "B"},\n "note": "x"}', "m.json:2: unknown member 'note'"),
        ("m.json", '{"PER": "I-PER"}', "m.json:1: the target type 'I-PER' has a tag prefix"),
    ],
)
def test_malformed_maps_are_one_clear_error(tmp_path, name, text, expect):
    with pytest.raises(InputError) as err:
        load_label_map(make(tmp_path, text, name))
    assert str(err.value).startswith(str(tmp_path / expect.split(":", 1)[0]) + ":" + expect.split(":", 1)[1]), str(err.value)


def test_unknown_name_lists_the_shipped_maps(tmp_path):
    with pytest.raises(InputError, match="no label map 'ontonotes'.*ontonotes-conll, wnut17-conll"):
        load_label_map("ontonotes")
    with pytest.raises(InputError, match="cannot read the label map"):
        load_label_map(str(tmp_path))
