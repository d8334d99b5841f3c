"""Span-annotated text as gold (issue #10): JSONL entity spans -> IOB2 word tags for train, tag
--report and evaluate; the tokenisation contract in nerbatch.json; -DOCSTART- in CoNLL output of text."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.spans import Span, SpanError, align, gold_spans
from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, read
from nerbatch.io.text import apply_contract

TEXT = "Turku is the oldest city in Finland. Aino Virtanen won the Helsinki Marathon."
GOLD = [(0, 5, "LOC"), (28, 35, "LOC"), (37, 50, "PER"), (59, 76, "MISC")]
TOKENS = [
    ["Turku", "is", "the", "oldest", "city", "in", "Finland", "."],
    ["Aino", "Virtanen", "won", "the", "Helsinki", "Marathon", "."],
]
TAGS = [
    ["B-LOC", "O", "O", "O", "O", "O", "B-LOC", "O"],
    ["B-PER", "I-PER", "O", "O", "B-MISC", "I-MISC", "O"],
]
RECORDS = [
    {"text": TEXT, "entities": [list(g) for g in GOLD]},
    {"text": "Nokia rose 5% in Espoo on Monday.", "entities": [[0, 5, "ORG"], [17, 22, "LOC"]]},
    {"text": "Nothing to see here.", "entities": []},
    {"text": "Sales fell in Oslo, and Kari Nordmann left Equinor on Friday.",
     "entities": [[14, 18, "LOC"], [24, 37, "PER"], [43, 50, "ORG"]]},
]


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def jsonl(path, objs) -> str:
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objs), encoding="utf-8")
    return str(path)


def words_and_tags(path, options: ReadOptions = ReadOptions()):
    return [(s.tokens, s.tags) for s in read(str(path), None, options) if s.tokens]


# --------------------------------------------------------------------------------------------- #
# Reading: every variant gives the same word tags
# --------------------------------------------------------------------------------------------- #

VARIANTS = {
    "spacy triples": {"text": TEXT, "entities": [list(g) for g in GOLD]},
    "prodigy spans": {
        "text": TEXT,
        "tokens": [{"text": "Turku", "start": 0, "end": 5, "id": 0}],  # Prodigy's own tokens: the text is tokenised
        "spans": [{"start": s, "end": e, "label": lab, "token_start": 0, "token_end": 0} for s, e, lab in GOLD],
        "answer": "accept",
    },
    "doccano objects": {
        "text": TEXT,
        "entities": [{"id": i, "start_offset": s, "end_offset": e, "label": lab} for i, (s, e, lab) in enumerate(GOLD)],
        "relations": [],
    },
    "doccano label triples": {"text": TEXT, "label": [list(g) for g in GOLD]},
    "label studio json-min": {
        "text": TEXT, "id": 7,
        "label": [{"start": s, "end": e, "text": TEXT[s:e], "labels": [lab]} for s, e, lab in GOLD],
    },
    "label studio task": {
        "id": 7,
        "data": {"text": TEXT},
        "annotations": [
            {"was_cancelled": True, "result": []},
            {"result": [
                {"from_name": "label", "to_name": "text", "type": "labels",
                 "value": {"start": s, "end": e, "text": TEXT[s:e], "labels": [lab]}} for s, e, lab in GOLD
            ] + [{"type": "relation", "from_id": "a", "to_id": "b"}]},
        ],
        "predictions": [],
    },
    "nerbatch entities": {
        "text": TEXT,
        "entities": [{"label": lab, "start": 0, "end": 1, "char_start": s, "char_end": e} for s, e, lab in GOLD],
    },
    "outer whitespace trimmed, unordered, duplicated": {
        "text": TEXT,
        "entities": [[58, 76, "MISC"], [0, 5, "LOC"], [27, 35, "LOC"], [37, 51, "PER"], [0, 5, "LOC"]],
    },
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_each_variant_gives_the_same_word_tags(tmp_path, name):
    path = jsonl(tmp_path / "gold.jsonl", [VARIANTS[name]])
    got = words_and_tags(path)
    assert got == list(zip(TOKENS, TAGS)), name
    sents = [s for s in read(path) if s.tokens]
    assert [s.part for s in sents] == [0, 1] and sents[-1].last and sents[0].doc_id == sents[1].doc_id  # one record


def test_layout_and_tokenizer_apply_to_span_records(tmp_path):
    path = jsonl(tmp_path / "gold.jsonl", [{"text": "Turku is\nin Finland.", "entities": [[0, 5, "LOC"], [12, 19, "LOC"]]}])
    assert words_and_tags(path, ReadOptions(layout="line")) == [
        (["Turku", "is"], ["B-LOC", "O"]), (["in", "Finland", "."], ["O", "B-LOC", "O"])
    ]
    with pytest.raises(InputError, match=r"gold.jsonl:1: span \[12, 19, 'LOC'\] 'Finland' does not fall on token"):
        words_and_tags(path, ReadOptions(tokenizer="whitespace"))  # "Finland." is one whitespace word


def test_a_span_across_a_sentence_break_joins_the_sentences():
    text = "He met Mr. Smith there."
    sents = [[("He", 0, 2), ("met", 3, 6), ("Mr.", 7, 10)], [("Smith", 11, 16), ("there", 17, 22), (".", 22, 23)]]
    assert align(text, sents, [Span(7, 16, "PER")]) == [
        (sents[0] + sents[1], ["O", "O", "B-PER", "I-PER", "O", "O"])
    ]
    assert [t for _, t in align(text, sents, [])] == [["O"] * 3, ["O"] * 3]


@pytest.mark.parametrize(
    "record, message",
    [
        ({"text": TEXT, "entities": [[0, 5, "LOC"], [2, 8, "LOC"]]}, r"spans \[0, 5, 'LOC'\] 'Turku' and \[2, 8, 'LOC'\] 'rku is' overlap"),
        ({"text": TEXT, "entities": [[37, 50, "PER"], [42, 50, "PER"]]}, r"overlap"),  # nested
        ({"text": TEXT, "entities": [[0, 5, "LOC"], [0, 5, "ORG"]]}, r"overlap"),  # same span, two types
        ({"text": TEXT, "entities": [[28, 33, "LOC"]]}, r"span \[28, 33, 'LOC'\] 'Finla' does not fall on token boundaries: the tokens there are 'Finland' \(28-35\)"),
        ({"text": TEXT, "entities": [[1, 5, "LOC"]]}, r"'urku' does not fall on token boundaries"),
        ({"text": TEXT, "entities": [[5, 7, "LOC"]]}, r"span \[5, 7, 'LOC'\] ' i' does not fall on token boundaries"),
        ({"text": TEXT, "entities": [[70, 90, "LOC"]]}, r"outside the text \(77 characters\)"),
        ({"text": TEXT, "entities": [[5, 5, "LOC"]]}, r"outside the text .* or empty"),
        ({"text": TEXT, "entities": [[0, 5, "B LOC"]]}, r"the label must be a non-empty string without whitespace"),
        ({"text": TEXT, "entities": [[0, 5, "O"]]}, r"span \[0, 5, 'O'\]: 'O' marks words outside entities; it is not an entity type"),
        ({"text": TEXT, "entities": [[0, 5, "B-LOC"]]}, r"span \[0, 5, 'B-LOC'\]: the label is already a tag; give its entity type \('LOC'\)"),
        ({"text": TEXT, "spans": [{"start": 0, "end": 5, "label": "I-LOC"}]}, r"the label is already a tag"),
        ({"text": TEXT, "entities": [[0, 5, "-"]]}, r"span \[0, 5, '-'\]: the label has no letter or digit"),
        ({"text": TEXT, "entities": [[0, 5]]}, r"expected \[start, end, label\]"),
        ({"text": TEXT, "entities": [["0", 5, "LOC"]]}, r"start and end must be integers"),
        ({"text": TEXT, "entities": {"start": 0}}, r"'entities' must be a list of spans"),
        ({"text": TEXT, "spans": [{"start": 0, "end": 5, "labels": ["LOC", "ORG"]}]}, r"exactly one label"),
        ({"text": TEXT, "spans": [{"start": 0, "end": 5, "label": "LOC"}], "answer": "reject"}, r"answer is 'reject' \(Prodigy\)"),
        ({"data": {"text": TEXT}, "annotations": [{"result": []}, {"result": []}]}, r"has 2 annotations"),
        ({"data": {"text": TEXT}, "annotations": [{"was_cancelled": True, "result": []}]}, r"has no annotation"),
    ],
)
def test_bad_spans_are_errors_with_file_and_line(tmp_path, record, message):
    path = jsonl(tmp_path / "gold.jsonl", [RECORDS[1], record])
    with pytest.raises(InputError, match=r"gold.jsonl:2: .*" + message):
        words_and_tags(path)


def test_whitespace_only_span():
    with pytest.raises(SpanError, match=r"span \[5, 6, 'LOC'\] ' ' covers only whitespace"):
        gold_spans({"text": TEXT, "entities": [[5, 6, "LOC"]]})


def test_nerbatch_outputs_and_classification_labels_are_not_gold(tmp_path):
    assert gold_spans({"text": TEXT, "label": ["positive"]}) is None
    assert gold_spans({"text": TEXT, "label": "positive"}) is None
    # a tagged output: "entities" are predictions next to pred_tags
    tagged = {"text": TEXT, "pred_tags": ["O"] * 15, "entities": [{"label": "LOC", "char_start": 0, "char_end": 5}]}
    assert gold_spans(tagged) is None


def test_on_error_skip_makes_a_reject(tmp_path, tiny_model):
    bad = {"text": TEXT, "entities": [[28, 33, "LOC"]]}
    src = jsonl(tmp_path / "gold.jsonl", [RECORDS[1], bad, RECORDS[2]])
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["tag", src, "-o", str(out), "--model", tiny_model, "--on-error", "skip", "-q"])
    assert res.exit_code == 3, res.output
    assert len(out.read_text().splitlines()) == 2
    rejects = [json.loads(x) for x in (tmp_path / "out.jsonl.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], "'Finla' does not fall on token boundaries" in r["error"]) for r in rejects] == [(2, True)]


# --------------------------------------------------------------------------------------------- #
# Training
# --------------------------------------------------------------------------------------------- #


def test_training_with_a_misaligned_span_fails_with_file_and_line(tmp_path, tiny_encoder):
    bad = {"text": "Nokia rose 5% in Espoo on Monday.", "entities": [[0, 3, "ORG"]]}
    src = jsonl(tmp_path / "train.jsonl", [RECORDS[0], bad])
    out = tmp_path / "model"
    res = CliRunner().invoke(cli, ["train", "--train", src, "-o", str(out), "--base-model", tiny_encoder, "--epochs", "1", "-q"])
    assert res.exit_code == 2, res.output
    assert f"{src}:2: span [0, 3, 'ORG'] 'Nok' does not fall on token boundaries" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / ".model.nerbatch-train").exists()


@pytest.fixture(scope="module")
def span_model(tiny_encoder, tmp_path_factory):
    """A tiny model trained on span JSONL with --layout paragraph (recorded as the contract)."""
    folder = tmp_path_factory.mktemp("spans")
    src = jsonl(folder / "train.jsonl", RECORDS * 3)
    out = folder / "model"
    res = run("train", "--train", src, "-o", str(out), "--base-model", tiny_encoder, "--epochs", "1",
              "--max-length", "64", "--lr", "5e-3", "--layout", "paragraph", "-q")
    assert res.exit_code == 0, res.output
    return out


def test_span_jsonl_trains_with_labels_from_the_spans(span_model):
    config = json.loads((span_model / "config.json").read_text())
    assert set(config["id2label"].values()) == {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
    metrics = json.loads((span_model / "metrics.json").read_text())
    assert metrics["train_sentences"] == 3 * 5  # the first record has two sentences, the others one each


def test_nerbatch_json_records_the_tokenisation_contract(span_model):
    from nerbatch.core.tokenize import TOKENIZER, TextSettings

    saved = json.loads((span_model / "nerbatch.json").read_text())
    assert saved["text"] == TextSettings.current("paragraph").to_dict()
    assert saved["text"]["tokenizer"] == TOKENIZER and saved["text"]["layout"] == "paragraph"


def test_tag_applies_the_contract_and_says_when_a_run_differs(span_model, tmp_path):
    src = tmp_path / "news.txt"
    src.write_text("Turku is the oldest city in\nFinland. Aino won.\n", encoding="utf-8")
    out = tmp_path / "out.conll"
    res = run("tag", str(src), "-o", str(out), "--model", str(span_model))
    assert res.exit_code == 0, res.output
    assert "trained with" not in res.stderr
    # paragraph layout (recorded): the wrapped line is joined, then split into two sentences
    sentences = [[ln.split()[0] for ln in block.splitlines()] for block in out.read_text().strip().split("\n\n")]
    assert sentences == [["Turku", "is", "the", "oldest", "city", "in", "Finland", "."], ["Aino", "won", "."]]
    res = run("tag", str(src), "-o", str(out), "--model", str(span_model), "--layout", "line", "--tokenizer", "whitespace")
    assert res.exit_code == 0, res.output
    assert "nerbatch: --layout line: the model was trained with --layout paragraph for such input" in res.stderr
    assert "nerbatch: --tokenizer whitespace: the model was trained on text cut by treebank" in res.stderr
    sentences = [[ln.split()[0] for ln in block.splitlines()] for block in out.read_text().strip().split("\n\n")]
    assert sentences == [["Turku", "is", "the", "oldest", "city", "in"], ["Finland.", "Aino", "won."]]
    # CoNLL input holds no raw text: nothing to say
    conll = tmp_path / "in.conll"
    conll.write_text("Turku B-LOC\n", encoding="utf-8")
    res = run("tag", str(conll), "-o", str(tmp_path / "c.conll"), "--model", str(span_model), "--layout", "line")
    assert res.exit_code == 0 and "trained with" not in res.stderr


def test_apply_contract():
    from nerbatch.core.tokenize import TextSettings

    recorded = TextSettings.current(None, "whitespace").to_dict()
    opts, notes = apply_contract(ReadOptions(), recorded, ["jsonl"])
    assert (opts.tokenizer, opts.layout, notes) == ("whitespace", None, [])
    opts, notes = apply_contract(ReadOptions(layout="document"), recorded, ["jsonl"], layout_given=True)
    assert notes == []  # document is what JSONL text got in training
    opts, notes = apply_contract(ReadOptions(layout="document"), recorded, ["text"], layout_given=True)
    assert notes == ["--layout document: the model was trained with --layout line for such input"]
    opts, notes = apply_contract(ReadOptions(), {**recorded, "rules": 0}, ["text"])
    assert notes == ["the model's training text was tokenised otherwise (rules 0 then, 1 now): some tokens may differ"]
    assert apply_contract(ReadOptions(), None, ["text"]) == (ReadOptions(), [])
    assert apply_contract(ReadOptions(), {**recorded, "rules": 0}, ["conll"])[1] == []


def test_a_model_trained_on_tokens_records_no_contract(tmp_path):
    from nerbatch.model.settings import text_contract

    assert text_contract({"max_length": 64, "context": True}) is None


# --------------------------------------------------------------------------------------------- #
# Scoring: span gold scores like the equivalent CoNLL gold
# --------------------------------------------------------------------------------------------- #


def _equivalent_conll(path, spans_path) -> str:
    lines = []
    for sent in read(spans_path):
        if sent.tokens:
            lines += [f"{t} {g}" for t, g in zip(sent.tokens, sent.tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _scores(report: dict) -> dict:
    return {
        "overall": report["overall"],
        "per_type": report["per_type"],
        "tokens": report["tokens"],
        "accuracy": report["accuracy"],
    }


def test_span_gold_scores_like_the_equivalent_conll_gold(tmp_path, tiny_model):
    spans = jsonl(tmp_path / "gold.jsonl", RECORDS)
    conll = _equivalent_conll(tmp_path / "gold.conll", spans)
    got = {}
    for name, src in (("jsonl", spans), ("conll", conll)):
        res = run("evaluate", "--model", tiny_model, src, "--json", str(tmp_path / f"{name}.eval.json"), "--bootstrap", "0")
        assert res.exit_code == 0, res.output
        got[f"evaluate {name}"] = _scores(json.loads((tmp_path / f"{name}.eval.json").read_text()))
    for out in ("out.jsonl", "out.conll"):
        res = run("tag", spans, "-o", str(tmp_path / out), "--model", tiny_model, "--report-json", str(tmp_path / f"{out}.json"), "-q")
        assert res.exit_code == 0, res.output
        got[f"tag {out}"] = _scores(json.loads((tmp_path / f"{out}.json").read_text()))
        res = run("evaluate", str(tmp_path / out), "--json", str(tmp_path / f"{out}.eval.json"), "--bootstrap", "0")
        assert res.exit_code == 0, res.output
        got[f"evaluate {out}"] = _scores(json.loads((tmp_path / f"{out}.eval.json").read_text()))
    want = got["evaluate conll"]
    for name, scores in got.items():
        # -DOCSTART- lines count as tokens in a CoNLL file (as in conlleval): not in P/R/F1
        same = scores if "conll" not in name or name == "evaluate conll" else {**scores, "tokens": want["tokens"], "accuracy": want["accuracy"]}
        assert same == want, name
    tagged = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert tagged[0]["tags"] == TAGS[0] + TAGS[1]  # the gold, as word tags
    assert tagged[0]["text"] == TEXT and tagged[0]["tokens"] == TOKENS[0] + TOKENS[1]


def test_tag_report_on_span_gold_is_not_refused(tmp_path, tiny_model):
    src = jsonl(tmp_path / "gold.jsonl", [RECORDS[2]])
    res = run("tag", src, "-o", str(tmp_path / "o.jsonl"), "--model", tiny_model, "--report", str(tmp_path / "r.txt"), "-q")
    assert res.exit_code == 0, res.output


# --------------------------------------------------------------------------------------------- #
# CoNLL output of text: -DOCSTART- between documents
# --------------------------------------------------------------------------------------------- #


def _blocks(path) -> list[list[str]]:
    return [block.splitlines() for block in path.read_text().strip().split("\n\n")]


def test_conll_output_of_text_records_has_docstart_between_documents(tmp_path, tiny_model):
    src = jsonl(tmp_path / "in.jsonl", [{"text": TEXT}, {"text": "Nokia rose."}, {"text": "Espoo too.", "doc_id": "d"},
                                        {"text": "And Oslo.", "doc_id": "d"}])
    out = tmp_path / "out.conll"
    assert run("tag", src, "-o", str(out), "--model", tiny_model, "-q").exit_code == 0
    words = [[ln.split()[0] for ln in block] for block in _blocks(out)]
    assert words == [TOKENS[0], TOKENS[1], ["-DOCSTART-"], ["Nokia", "rose", "."], ["-DOCSTART-"],
                     ["Espoo", "too", "."], ["And", "Oslo", "."]]
    assert all(len(ln.split()) == 2 for block in _blocks(out) for ln in block)  # the same columns throughout
    # with gold (span records): word gold pred, and -DOCSTART- O O
    gold = jsonl(tmp_path / "gold.jsonl", RECORDS[:2])
    assert run("tag", gold, "-o", str(out), "--model", tiny_model, "-q").exit_code == 0
    blocks = _blocks(out)
    assert blocks[2] == ["-DOCSTART- O O"] and all(len(ln.split()) == 3 for b in blocks for ln in b)
    assert [s.doc_id for s in read(str(out), "conll", ReadOptions(tag_column=-2, pred_column=-1)) if s.tokens] == ["0", "0", "1"]


def test_a_text_file_is_one_document(tmp_path, tiny_model):
    src = tmp_path / "in.txt"
    src.write_text("Turku is old.\n\nNokia rose.\nEspoo too.\n", encoding="utf-8")
    out = tmp_path / "out.conll"
    assert run("tag", str(src), "-o", str(out), "--model", tiny_model, "--layout", "paragraph", "-q").exit_code == 0
    assert "-DOCSTART-" not in out.read_text() and len(_blocks(out)) == 3
