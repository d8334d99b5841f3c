"""Label sets and option values: IOB1, IOBES and plain-label models decode under their own scheme and
their outputs score; training stops at a non-finite loss and never writes non-finite weights; CoNLL
output refuses tokens it cannot hold; every numeric option refuses NaN, infinities and negatives with
click's one-line message (exit 2), never a traceback."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nerbatch.cli import cli
from nerbatch.core.schemes import allowed_transitions, as_tags, is_well_formed, scheme_of
from nerbatch.tagging.decode import Decoder

from ..conftest import SAMPLE, build_tiny_model
from ..test_error_table import FUZZ


def run(*args: str, **kw):
    return CliRunner().invoke(cli, list(args), **kw)


def _probs(raw: np.ndarray) -> np.ndarray:
    e = np.exp(raw - raw.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _best_allowed(p: np.ndarray, allowed, start, end) -> float:
    """The log probability of the best allowed sequence, by brute force."""
    logp = np.log(np.maximum(p.astype(np.float64), 1e-30))
    return max(
        sum(logp[i, s] for i, s in enumerate(seq))
        for seq in itertools.product(range(p.shape[1]), repeat=len(p))
        if is_well_formed(seq, allowed, start, end)
    )


# -- item 8: the scheme of the label set decides what Viterbi allows -------------------------------


def test_schemes_of_label_sets():
    assert scheme_of(["O", "B-LOC", "I-LOC"]) == "iob2"
    assert scheme_of(["O", "I-PER", "I-LOC"]) == "iob1"
    assert scheme_of(["O", "B-LOC", "I-LOC", "I-PER"]) == "iob1"  # CoNLL-2003 IOB1: B-PER never occurs
    assert scheme_of(["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]) == "iobes"
    assert as_tags(["O", "LOC", "B-PER", "I-PER"]) == ["O", "I-LOC", "B-PER", "I-PER"]
    assert scheme_of(as_tags(["O", "LOC", "PER"])) == "iob1"


def test_iob1_labels_decode_as_argmax():
    """O/I-PER/I-LOC: an I-X may start an entity, so Viterbi keeps what argmax finds (the IOB2 rules
    made every I-X impossible: every word came out O)."""
    labels = ["O", "I-PER", "I-LOC"]
    p = np.array([[0.1, 0.8, 0.1], [0.1, 0.7, 0.2], [0.9, 0.05, 0.05], [0.2, 0.1, 0.7]], dtype=np.float32)
    ids, scores = Decoder(labels).decode(p)
    assert [labels[i] for i in ids] == ["I-PER", "I-PER", "O", "I-LOC"]
    assert scores == pytest.approx([0.8, 0.7, 0.9, 0.7])
    allowed, start, end = allowed_transitions(labels)
    assert allowed.all() and start.all() and end.all()


@FUZZ
@given(st.integers(1, 4).flatmap(lambda n: arrays(np.float64, (n, 5), elements=st.floats(-6, 6, allow_nan=False))))
def test_iobes_viterbi_finds_the_best_allowed_sequence(raw):
    labels = ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    dec = Decoder(labels)
    allowed, start, end = allowed_transitions(labels)
    p = _probs(raw)
    ids, _ = dec.decode(p)
    assert is_well_formed(ids, allowed, start, end)
    logp = np.log(np.maximum(p.astype(np.float64), 1e-30))
    assert sum(logp[i, s] for i, s in enumerate(ids)) == pytest.approx(_best_allowed(p, allowed, start, end), abs=1e-9)


def test_iobes_entities_are_closed():
    labels = ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    p = np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.6, 0.1, 0.1, 0.1, 0.1]], dtype=np.float32)  # argmax: B-LOC O
    ids, _ = Decoder(labels).decode(p)
    assert [labels[i] for i in ids] in (["S-LOC", "O"], ["B-LOC", "E-LOC"], ["O", "O"])
    assert [labels[i] for i in ids] != ["B-LOC", "O"]


def _biased_model(folder: Path, labels: list[str], scale: float = 60.0, favour: dict[str, float] | None = None) -> str:
    """A tiny random model whose classifier is sharpened (``scale``) so that words get different
    labels with confidence, and shifted towards ``favour``."""
    import torch
    from transformers import BertForTokenClassification

    build_tiny_model(folder, labels=labels)
    net = BertForTokenClassification.from_pretrained(folder)
    with torch.no_grad():
        net.classifier.weight.mul_(scale)
        for label, bias in (favour or {}).items():
            net.classifier.bias[labels.index(label)] = bias
    net.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def iob1_model(tmp_path_factory) -> str:
    return _biased_model(tmp_path_factory.mktemp("iob1") / "model", ["O", "I-PER", "I-LOC"], favour={"O": 1.0})


@pytest.fixture(scope="module")
def plain_model(tmp_path_factory) -> str:
    return _biased_model(tmp_path_factory.mktemp("plain") / "model", ["O", "LOC", "PER"], favour={"O": 1.0})


def _pred_column(path: Path) -> list[str]:
    return [line.split()[-1] for line in path.read_text().splitlines() if line.strip() and not line.startswith("-DOCSTART-")]


def test_iob1_model_tags_the_entities_argmax_finds(iob1_model, tmp_path):
    outs = {}
    for decode in ("viterbi", "argmax"):
        outs[decode] = tmp_path / f"{decode}.conll"
        res = run("tag", str(SAMPLE / "dev.conll"), "-o", str(outs[decode]), "--model", iob1_model, "--decode", decode, "-q")
        assert res.exit_code == 0, res.output
    viterbi, argmax = _pred_column(outs["viterbi"]), _pred_column(outs["argmax"])
    assert viterbi == argmax
    assert 0.05 < sum(t != "O" for t in viterbi) / len(viterbi) < 0.95  # entities, and not everywhere
    assert {"I-PER", "I-LOC"} <= set(viterbi)
    res = run("evaluate", str(outs["viterbi"]))
    assert res.exit_code == 0, res.output


# -- item 19: plain labels are IO tags, in tag and in evaluate ---------------------------------------


def test_plain_label_model_tags_io_tags_that_evaluate_scores(plain_model, tmp_path):
    out = tmp_path / "out.conll"
    res = run("tag", str(SAMPLE / "dev.conll"), "-o", str(out), "--model", plain_model, "-q")
    assert res.exit_code == 0, res.output
    pred = _pred_column(out)
    assert set(pred) == {"O", "I-LOC", "I-PER"}
    res = run("evaluate", str(out), "--bootstrap", "0")
    assert res.exit_code == 0, res.output
    assert "LOC" in res.stdout and "PER" in res.stdout
    res = run("evaluate", "--model", plain_model, str(SAMPLE / "dev.conll"), "--bootstrap", "0", "--device", "cpu")
    assert res.exit_code == 0, res.output
    report = tmp_path / "report.json"
    res = run("tag", str(SAMPLE / "dev.conll"), "-o", str(tmp_path / "r.conll"), "--model", plain_model, "-q", "--report-json", str(report))
    assert res.exit_code == 0, res.output
    assert json.loads(report.read_text())["sentences"] > 0


def test_plain_label_entities_keep_their_type(plain_model, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"tokens": ["turku", "is", "the", "oldest", "city", "in", "finland", "and", "of", "a", "to"]}\n')
    out = tmp_path / "out.jsonl"
    res = run("tag", str(src), "-o", str(out), "--model", plain_model, "-q")
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert set(rec["pred_tags"]) <= {"O", "I-LOC", "I-PER"}
    want = sum(1 for k, t in enumerate(rec["pred_tags"]) if t != "O" and (k == 0 or rec["pred_tags"][k - 1] != t))
    assert len(rec["entities"]) == want > 0
    assert {e["label"] for e in rec["entities"]} <= {"LOC", "PER"}


# -- item 10: JSONL -> CoNLL writes words as they are, or refuses them ------------------------------

UNWRITABLE = [
    (["New York", "is"], "token 1 'New York' holds a space"),
    (["a\tb"], "token 1 'a\\tb' holds a tab"),
    (["line\nbreak"], "token 1 'line\\nbreak' holds a line break"),
    (["x", "cr\rhere"], "token 2 'cr\\rhere' holds a line break"),
    (["ok", ""], "token 2 is empty"),
    (["-DOCSTART-", "x"], "token 1 is '-DOCSTART-', which CoNLL readers take for a document boundary"),
    (["\ufeffbom"], "token 1 '\\ufeffbom' starts with a byte-order mark (U+FEFF)"),
]


@pytest.mark.parametrize("tokens,message", UNWRITABLE, ids=["space", "tab", "LF", "CR", "empty", "docstart", "bom"])
def test_conll_output_refuses_words_it_cannot_hold(tiny_model, tmp_path, tokens, message):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"tokens": ["fine"]}) + "\n" + json.dumps({"tokens": tokens}) + "\n", encoding="utf-8")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    res = run("tag", str(src), "-o", str(out_dir / "x.conll"), "--model", tiny_model, "-q")
    assert res.exit_code == 2, res.output
    assert f"x.jsonl:2: {message}: a CoNLL output cannot hold it" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert os.listdir(out_dir) == []


def test_conll_output_gold_tag_with_a_space_is_refused(tiny_model, tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O", "B PER"]}) + "\n", encoding="utf-8")
    res = run("tag", str(src), "-o", str(tmp_path / "x.conll"), "--model", tiny_model, "-q")
    assert res.exit_code == 2 and "x.jsonl:1: gold tag 2 'B PER' holds a space" in res.stderr


def test_conll_output_rejects_them_under_on_error_skip(tiny_model, tmp_path):
    records = [{"tokens": ["Turku", "is"]}, {"tokens": ["New York"]}, {"tokens": ["-DOCSTART-"]}, {"tokens": ["in", "Finland"]}]
    src = tmp_path / "x.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    out = tmp_path / "x.conll"
    res = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--on-error", "skip")
    assert res.exit_code == 3, res.output
    from nerbatch.io import read

    assert [s.tokens for s in read(str(out), "conll") if s.tokens] == [["Turku", "is"], ["in", "Finland"]]
    rejects = [json.loads(line) for line in (tmp_path / "x.conll.rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["source"]) for r in rejects] == [(2, records[1]), (3, records[2])]
    assert "holds a space" in rejects[0]["error"] and "document boundary" in rejects[1]["error"]


def test_conll_output_keeps_unicode_spaces_and_separators(tiny_model, tmp_path):
    """NBSP, U+3000, U+2028, U+0085, VT and FF are part of a word (only ASCII spaces and tabs split
    CoNLL columns): written as they are and read back as the same words (they became `_`)."""
    tokens = ["New\u00a0York", "\u3000", "is\u2028here", "a\x85b", "v\x0bt", "f\x0c", "_", "#x", "-DOCSTART-x"]
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps({"tokens": tokens, "tags": ["O"] * len(tokens)}) + "\n", encoding="utf-8")
    out = tmp_path / "x.conll"
    res = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q")
    assert res.exit_code == 0, res.output
    from nerbatch.io import read

    (sent,) = [s for s in read(str(out), "conll") if s.tokens]
    assert sent.tokens == tokens
    res = run("evaluate", str(out), "--bootstrap", "0")
    assert res.exit_code == 0, res.output


@FUZZ
@given(
    sentences=st.lists(
        st.lists(st.one_of(st.text(max_size=6), st.sampled_from(["-DOCSTART-", "\ufeffa", "a b", "_"])), min_size=1, max_size=5),
        min_size=1, max_size=4,
    ),
    gold=st.booleans(),
)
def test_fuzz_conll_output_reads_back_or_refuses(tmp_path, sentences, gold):
    """Any words to CoNLL: the sentences that are written read back to the same words and gold tags;
    the others are refused with file:line, or rejected under skip."""
    from nerbatch.core.record import Sentence
    from nerbatch.errors import InputError
    from nerbatch.io import ReadOptions, open_writer, read
    from nerbatch.io.conll import conll_problem, writable_as_conll

    def sentence(k: int, toks: list[str]) -> Sentence:
        tags = ["B-X"] * len(toks) if gold else None
        return Sentence(tokens=toks, tags=tags, path="in.jsonl", line=k + 1, source={"tokens": toks}, pred=["O"] * len(toks))

    def read_back() -> list[Sentence]:
        return [s for s in read(str(out), "conll", ReadOptions(tag_column=1 if gold else None)) if s.tokens]

    bad = [k + 1 for k, toks in enumerate(sentences) if conll_problem(sentence(k, toks))]
    out = tmp_path / "out.conll"
    if out.exists():
        out.unlink()
    try:
        with open_writer(str(out), "conll") as w:
            for s in writable_as_conll([sentence(k, t) for k, t in enumerate(sentences)], skip=False):
                w.write(s)
    except InputError as exc:
        assert bad and str(exc).startswith(f"in.jsonl:{bad[0]}: ")
        assert not out.exists()
    else:
        assert not bad
        assert [(s.tokens, s.tags) for s in read_back()] == [(t, ["B-X"] * len(t) if gold else None) for t in sentences]
    kept = []
    with open_writer(str(out), "conll") as w:
        for s in writable_as_conll([sentence(k, t) for k, t in enumerate(sentences)], skip=True):
            w.write(s)
            assert (s.error is not None) == (s.line in bad)
            if s.error is None:
                kept.append(s.tokens)
    assert [s.tokens for s in read_back()] == kept == [t for k, t in enumerate(sentences) if k + 1 not in bad]


# -- item 9: a diverging training stops with exit 2 and writes no model ----------------------------


def _train(tiny_encoder, out: Path, *extra: str):
    return run("train", "--train", str(SAMPLE / "train.conll"), "-o", str(out), "--base-model", tiny_encoder, "--warmup", "0",
               "--epochs", "1", "--max-length", "32", "--no-bf16", "--casing", "none", "-q", *extra)


def test_training_whose_loss_becomes_nan_stops_with_a_clear_error(tiny_encoder, tmp_path):
    out = tmp_path / "model"
    res = _train(tiny_encoder, out, "--lr", "1e39", "--every", "20", "--batch-size", "4", "--no-group-by-length")
    assert res.exit_code == 2, res.output
    assert "training diverged: the training loss is nan at step 2 (epoch " in res.stderr
    assert "no model was written (try a lower --lr (this run: 1e+39)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []  # no model, no work folder, no lock left


def test_trained_weights_that_are_not_finite_are_never_published(tiny_encoder, tmp_path):
    """One step: its loss is finite, the update after it makes the weights infinite."""
    out = tmp_path / "model"
    res = _train(tiny_encoder, out, "--lr", "1e39", "--every", "50", "--batch-size", "64")
    assert res.exit_code == 2, res.output
    assert "training diverged: " in res.stderr and "weight tensors hold NaN or infinite values" in res.stderr
    assert os.listdir(tmp_path) == []


def test_train_max_length_beyond_the_encoder_is_refused(tiny_encoder, tmp_path):
    res = _train(tiny_encoder, tmp_path / "model", "--max-length", "512", "--every", "50")
    assert res.exit_code == 2, res.output
    assert "--max-length 512 exceeds the encoder's limit of 128 subwords (pass --max-length 128 or less)" in res.stderr
    assert os.listdir(tmp_path) == []


# -- item 17: numeric options refuse NaN, infinities, negatives and absurd sizes (click, exit 2) ----

# every numeric option: (command, option, values that are wrong for it)
NONFINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", " nan"]
NUMERIC_OPTIONS = [
    ("tag", "--min-score", ["-0.1", "1.5"]),
    ("train", "--epochs", ["0", "-1", "10001"]),
    ("train", "--lr", ["0", "-1", "-1e-9"]),
    ("train", "--warmup", ["-1", "-0.1", "1", "1.5"]),
    ("train", "--batch-size", ["0", "-1", "65537"]),
    ("train", "--seed", ["-1", str(2**32)]),
    ("train", "--max-length", ["7", "-1", "513"]),
    ("train", "--every", ["0", "-1"]),
    ("train", "--patience", ["0", "-1"]),
    ("train", "--checkpoint-steps", ["-1"]),
    ("train", "--threads", ["0", "-1", "1025", "1000000"]),
    ("tag", "--batch-tokens", ["63", "-1"]),
    ("tag", "--max-batch", ["0", "-1"]),
    ("tag", "--max-length", ["7", "513", "-1"]),
    ("tag", "--stride", ["0", "-1"]),
    ("tag", "--threads", ["0", "-1", "1025", "1000000"]),
    ("tag", "--checkpoint-every", ["-1"]),
    ("tag", "--workers", ["0", "-1"]),
    ("evaluate", "--bootstrap", ["-1", "1000001"]),
    ("evaluate", "--seed", ["-1", str(2**32)]),
    ("evaluate", "--examples", ["-1"]),
    ("evaluate", "--target-precision", ["-0.1", "1.01", "2"]),
    ("train", "--max-sentence-tokens", ["0", "-1"]),
    ("tag", "--max-sentence-tokens", ["0", "-1"]),
    ("evaluate", "--max-sentence-tokens", ["0", "-1"]),
]
REQUIRED = {"train": ["--train", "x.conll", "-o", "never-written"], "tag": ["x.conll", "--model", "no-model"], "evaluate": ["x.conll"]}


def _refused(command: str, option: str, value: str) -> None:
    """The command refuses ``option value`` before doing anything: exit 2, click's usage error (one
    ``Error:`` line naming the option), no traceback."""
    res = run(command, *REQUIRED[command], f"{option}={value}")
    assert res.exit_code == 2, (command, option, value, res.output, res.exception)
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(f"Error: Invalid value for '{option}': "), res.stderr
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    "command,option,value",
    [(c, o, v) for c, o, values in NUMERIC_OPTIONS for v in values + ["nan", "-inf"]],
)
def test_numeric_options_refuse_wrong_values(command, option, value):
    _refused(command, option, value)


def test_the_issue_examples_are_usage_errors():
    res = run("train", *REQUIRED["train"], "--epochs", "nan")
    assert res.exit_code == 2 and "Error: Invalid value for '--epochs': 'nan' is not a finite number." in res.stderr
    res = run("train", *REQUIRED["train"], "--lr", "-1")
    assert res.exit_code == 2 and "Error: Invalid value for '--lr': -1.0 is not in the range x>0." in res.stderr
    res = run("evaluate", "x.conll", "--seed", "-1")
    assert res.exit_code == 2 and "Error: Invalid value for '--seed': -1 is not in the range 0<=x<=4294967295." in res.stderr


def test_every_numeric_option_is_covered():
    """A numeric option added later must join NUMERIC_OPTIONS (or be one that takes any integer)."""
    import click

    takes_any = {(c, "--token-column") for c in ("train", "tag")}  # negative counts from the end
    covered = {(c, o) for c, o, _ in NUMERIC_OPTIONS}
    for name in ("train", "tag", "evaluate"):
        for param in cli.commands[name].params:
            if isinstance(param, click.Option) and isinstance(param.type, (click.types.IntParamType, click.types.FloatParamType)):
                key = (name, max(param.opts, key=len))
                assert key in covered or key in takes_any, key
                if key not in takes_any:
                    assert isinstance(param.type, (click.IntRange, click.FloatRange)), key


def test_cli_window_bound_is_the_settings_one():
    from nerbatch import cli as cli_module
    from nerbatch.model.settings import MAX_WINDOW

    assert cli_module.MAX_WINDOW == MAX_WINDOW


_bad_number = st.one_of(
    st.sampled_from(NONFINITE + ["+inf", "-Infinity", "INF", "nan ", "-nan", "1e309", "-1e309"]),
    st.integers(max_value=-1).map(str),
    st.floats(max_value=-1e-300, allow_nan=False, allow_infinity=False).map(repr),
    st.tuples(  # any spelling float() takes: sign, case, surrounding whitespace
        st.sampled_from(["", "+", "-"]),
        st.sampled_from(["nan", "inf", "infinity"]).flatmap(lambda w: st.tuples(*[st.sampled_from([c, c.upper()]) for c in w]).map("".join)),
        st.sampled_from(["", " ", "\t", "\n"]),
    ).map(lambda t: t[2] + t[0] + t[1] + t[2]),
)


@FUZZ
@given(case=st.sampled_from([(c, o) for c, o, _ in NUMERIC_OPTIONS]), value=_bad_number)
def test_fuzz_numeric_options_refuse_non_finite_and_negative_values(case, value):
    command, option = case
    _refused(command, option, value)


@pytest.mark.parametrize("field,value", [("epochs", float("nan")), ("lr", float("inf")), ("lr", -1.0), ("warmup", float("nan")), ("warmup", 1.0)])
def test_library_training_options_are_checked_too(tmp_path, field, value):
    from nerbatch.errors import InputError
    from nerbatch.training.train import TrainOptions, train

    opts = TrainOptions(train=[str(SAMPLE / "train.conll")], output_dir=str(tmp_path / "model"), **{field: value})
    with pytest.raises(InputError, match="must be finite numbers, --lr above 0, --warmup from 0 to below 1"):
        train(opts)
    assert os.listdir(tmp_path) == []
