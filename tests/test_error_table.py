"""One test per row of the README's failure-class table, plus a fuzz run of the readers.

Each row: what the user feeds in, the exit code, and what stderr must say. Rows with exit code 2
also check that no output file (or temporary file) is left behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nerbatch.cli import cli
from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, read

CONLL = "EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n"
CONLLU = (
    "# sent_id = 1\n# text = EU rejects it\n"
    "1\tEU\tEU\tPROPN\t_\t_\t2\tnsubj\t_\t_\n"
    "2-3\trejects-it\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\trejects\treject\tVERB\t_\t_\t0\troot\t_\t_\n"
    "3\tit\tit\tPRON\t_\t_\t2\tobj\t_\t_\n"
    "3.1\tx\t_\t_\t_\t_\t_\t_\t_\t_\n\n"
)
DEEP_JSON = '{"tokens": ["b"], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
HUGE_INT_JSON = '{"tokens": ["b"], "x": 1' + "0" * 1_000_000 + "}"


def write(path: Path, data) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def parquet(path: Path, table: pa.Table) -> Path:
    pq.write_table(table, path)
    return path


# (id, file name, content builder, extra options, exit code, stderr must contain)
ROWS = [
    ("wrong column count", "x.conll", CONLL.replace("rejects VBZ O", "rejects O"), [], 2, "x.conll:2: expected 3 columns like the first token line, found 2"),
    ("empty token", "x.conll", "EU\tB-ORG\n\tO\n", [], 2, "x.conll:2: empty column: an empty token"),
    ("empty column", "x.conll", "EU\tNNP\tB-ORG\nrejects\t\tO\n", [], 2, "x.conll:2: empty column"),
    ("line of only spaces", "x.conll", CONLL.replace("\n\n", "\n   \n"), [], 0, ""),
    ("tabs mixed with spaces", "x.conll", "EU\tNNP\tB-ORG\nrejects VBZ\tO\n", [], 2, "x.conll:2: expected 3 columns like the first token line, found 2"),
    ("invalid UTF-8", "x.conll", b"EU NNP B-ORG\ncaf\xe9 NN O\n", [], 2, "x.conll:2: invalid utf-8 at byte offset 16"),
    ("invalid UTF-8, --errors replace", "x.conll", b"EU NNP B-ORG\ncaf\xe9 NN O\n", ["--errors", "replace"], 0, ""),
    ("latin-1, --encoding latin-1", "x.conll", b"EU NNP B-ORG\ncaf\xe9 NN O\n", ["--encoding", "latin-1"], 0, ""),
    ("UTF-8 BOM", "x.conll", b"\xef\xbb\xbf" + CONLL.encode(), [], 0, ""),
    ("CRLF line ends", "x.conll", CONLL.replace("\n", "\r\n"), [], 0, ""),
    ("100,000-character token", "x.conll", "Turku B-LOC\n" + "x" * 100_000 + " O\n", [], 0, ""),
    ("empty file", "x.conll", "", [], 0, ""),
    ("only -DOCSTART-", "x.conll", "-DOCSTART- -X- -X- O\n\n", [], 0, ""),
    ("truncated JSONL", "x.jsonl", '{"tokens": ["a"]}\n{"tokens": ["b", "c"', [], 2, "x.jsonl:2: invalid JSON"),
    ("JSON that is not an object", "x.jsonl", '{"tokens": ["a"]}\n[1, 2]\n', [], 2, "x.jsonl:2: expected a JSON object, found list"),
    ("tokens not a list of strings", "x.jsonl", '{"tokens": ["a", 3]}\n', [], 2, "x.jsonl:1: 'tokens' must be a list of strings"),
    ("Parquet tokens of the wrong type", "x.parquet", pa.table({"tokens": [1, 2]}), [], 2, "x.parquet: column 'tokens' has type int64; expected list<string>"),
    ("Parquet without the token column", "x.parquet", pa.table({"words": [["a"]]}), [], 2, "x.parquet: no 'tokens' column"),
    ("Parquet null tokens in a row", "x.parquet", pa.table({"tokens": [["a"], None]}), [], 2, "x.parquet:2: no 'tokens' or 'text' field"),
    ("not a Parquet file", "x.parquet", b"PAR1 but not really", [], 2, "x.parquet: not a readable Parquet file"),
    ("CR-only line ends (old Mac)", "x.conll", CONLL.replace("\n", "\r"), [], 0, ""),
    ("NBSP, U+2028, U+3000 inside tokens", "x.conll", "New\u00a0York NNP B-LOC\nis\u2028here VBZ O\n\n\u3000 SYM O\n", [], 0, ""),
    ("byte-order mark in the middle (cat a b)", "x.conll", b"\xef\xbb\xbf" + CONLL.encode() + b"\n\xef\xbb\xbf" + CONLL.encode(), [], 2, "x.conll:6: a byte-order mark (U+FEFF) in the middle of the file: concatenated files?"),
    ("CoNLL-U", "x.conllu", CONLLU, [], 0, ""),
    ("JSON nested 100,000 deep", "x.jsonl", '{"tokens": ["a"]}\n' + DEEP_JSON + "\n", [], 2, "x.jsonl:2: invalid JSON: arrays or objects nested too deeply to read"),
    ("JSON integer of 1,000,000 digits", "x.jsonl", '{"tokens": ["a"]}\n' + HUGE_INT_JSON + "\n", [], 2, "x.jsonl:2: invalid JSON: an integer with more than 4300 digits"),
    ("NaN / Infinity in JSONL", "x.jsonl", '{"tokens": ["a"], "score": NaN}\n', [], 2, "x.jsonl:1: invalid JSON: NaN is not a JSON value"),
]


@pytest.mark.parametrize("case,name,content,extra,code,message", ROWS, ids=[r[0] for r in ROWS])
def test_failure_class(tiny_model, tmp_path, case, name, content, extra, code, message):
    src = tmp_path / name
    if isinstance(content, pa.Table):
        parquet(src, content)
    else:
        write(src, content)
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / ("result" + src.suffix)
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "-q", *extra])
    assert res.exit_code == code, res.output
    if code == 2:
        assert message in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
        assert os.listdir(outdir) == []
    else:
        assert out.exists()
        if src.suffix in (".conll", ".conllu"):  # line for line, one tag per token
            lines_in = src.read_bytes().decode("utf-8", "replace").lstrip("\ufeff").splitlines()
            lines_out = out.read_text(encoding="utf-8").splitlines()
            assert len(lines_in) == len(lines_out)


@pytest.mark.parametrize("content", [DEEP_JSON, HUGE_INT_JSON, '{"tokens": ["b"], "x": -Infinity}'], ids=["deep", "huge int", "Infinity"])
def test_json_extremes_with_on_error_skip(tiny_model, tmp_path, content):
    """Rejected under --on-error skip (exit 3), the other records tagged, no partial file left."""
    src = write(tmp_path / "x.jsonl", '{"tokens": ["a"]}\n' + content + '\n{"tokens": ["c"]}\n')
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "result.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--on-error", "skip"])
    assert res.exit_code == 3, res.output
    assert [json.loads(line)["tokens"] for line in out.read_text().splitlines()] == [["a"], ["c"]]
    assert not [n for n in os.listdir(outdir) if ".part" in n]


def test_parquet_timestamps_to_jsonl(tiny_model, tmp_path):
    import datetime as dt
    import decimal

    src = parquet(tmp_path / "x.parquet", pa.table({
        "tokens": [["Turku", "is", "here"]],
        "when": pa.array([dt.datetime(2024, 5, 6, 7, 8, 9)], pa.timestamp("ms")),
        "day": pa.array([dt.date(2024, 5, 6)], pa.date32()),
        "price": pa.array([decimal.Decimal("19.90")], pa.decimal128(6, 2)),
        "blob": pa.array([b"\x00\x01"], pa.binary()),
    }))
    out = tmp_path / "out.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "-q"])
    assert res.exit_code == 0, res.output
    obj = json.loads(out.read_text())
    assert (obj["when"], obj["day"], obj["price"], obj["blob"]) == ("2024-05-06T07:08:09", "2024-05-06", "19.90", "AAE=")


def test_sentence_of_50000_words(tiny_model, tmp_path):
    src = write(tmp_path / "long.txt", " ".join(f"w{i % 1000}" for i in range(50_000)) + "\n")
    out = tmp_path / "long.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "-q"])
    assert res.exit_code == 0, res.output
    obj = json.loads(out.read_text())
    assert len(obj["pred_tags"]) == len(obj["tokens"]) == 50_000


def test_missing_input(tiny_model, tmp_path):
    res = CliRunner().invoke(cli, ["tag", str(tmp_path / "nope.conll"), "-o", str(tmp_path / "o.conll"), "--model", tiny_model])
    assert res.exit_code == 2 and "nope.conll: no such file" in res.stderr
    assert not (tmp_path / "o.conll").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file, so there is no unreadable file to test with")
def test_unreadable_input(tiny_model, tmp_path):
    src = write(tmp_path / "secret.conll", CONLL)
    src.chmod(0)
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(tmp_path / "o.conll"), "--model", tiny_model])
    assert res.exit_code == 2 and "permission denied" in res.stderr


def test_output_folder_cannot_be_written(tiny_model, tmp_path):
    blocker = write(tmp_path / "file", "not a folder")
    res = CliRunner().invoke(cli, ["tag", str(Path(__file__).parent.parent / "sample_data" / "dev.conll"), "-o", str(blocker / "out.conll"), "--model", tiny_model])
    assert res.exit_code == 2
    assert "cannot write here" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_model_without_fast_tokenizer(tiny_model, tmp_path):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    model = tmp_path / "slow"
    shutil.copytree(tiny_model, model)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).unlink()
    BertTokenizerLegacy(vocab_file=str(Path(tiny_model) / "vocab.txt")).save_pretrained(model)
    res = CliRunner().invoke(cli, ["tag", "-", "--model", str(model)], input="Turku is here\n")
    assert res.exit_code == 2
    assert "no fast (Rust) variant" in res.stderr


def test_model_without_labels(tiny_encoder):
    res = CliRunner().invoke(cli, ["tag", "-", "--model", tiny_encoder], input="Turku is here\n")
    assert res.exit_code == 2 and "no NER labels" in res.stderr


# -- fuzz: arbitrary bytes into every reader give sentences or an InputError, never a traceback --

FUZZ_EXAMPLES = int(os.environ.get("NERBATCH_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# JSON values as text, with what makes them unreadable: (text, has NaN/Infinity, nesting depth, longest integer)
_json_int = st.one_of(
    st.integers().map(str),
    st.integers(4290, 4310).map(lambda n: "1" + "0" * (n - 1)),  # around int()'s 4300-digit limit
    st.integers(4301, 20_000).map(lambda n: "-" + "9" * n),
    st.sampled_from(["-0", "0"]),
)
_json_float = st.one_of(
    st.sampled_from(["-0.0", "0e0", "1e400", "-1e400", "1e-400", "1E+308", "4.9e-324", "1.10", "1e5", "2.50"]),
    st.tuples(st.sampled_from(["", "-"]), st.integers(0, 10**60), st.text("0123456789", min_size=1, max_size=400), st.sampled_from(["", "e5", "E-7", "e+400", "E400"])).map(
        lambda t: f"{t[0]}{t[1]}.{t[2]}{t[3]}"
    ),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
_json_leaf = st.one_of(
    _json_int.map(lambda s: (s, False, 0, len(s.lstrip("-")))),
    _json_float.map(lambda s: (s, False, 0, 0)),
    st.sampled_from(["NaN", "Infinity", "-Infinity"]).map(lambda s: (s, True, 0, 0)),
    st.one_of(st.text(max_size=8), st.sampled_from(["NaN", "1e400", "[[["])).map(lambda s: (json.dumps(s), False, 0, 0)),
    st.sampled_from(["true", "false", "null"]).map(lambda s: (s, False, 0, 0)),
)


def _json_array(items):
    return ("[" + ", ".join(i[0] for i in items) + "]", any(i[1] for i in items), 1 + max((i[2] for i in items), default=0), max((i[3] for i in items), default=0))


def _json_object(members):
    items = list(members.values())
    text = "{" + ", ".join(f"{json.dumps(k)}: {v[0]}" for k, v in members.items()) + "}"
    return (text, any(i[1] for i in items), 1 + max((i[2] for i in items), default=0), max((i[3] for i in items), default=0))


def _deep(value, depth, brackets):
    text, const, d, digits = value
    if brackets == "[":
        return ("[" * depth + text + "]" * depth, const, d + depth, digits)
    return ('{"a": ' * depth + text + "}" * depth, const, d + depth, digits)


_json_value = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(_json_array), st.dictionaries(st.text(max_size=3), inner, max_size=3).map(_json_object)),
    max_leaves=6,
)
_json_extreme = st.one_of(
    _json_value,
    st.builds(_deep, _json_value, st.one_of(st.integers(1, 300), st.integers(300, 3000), st.integers(3000, 100_000)), st.sampled_from(["[", "{"])),
)
# CoNLL tokens with a Unicode space (or other non-ASCII-space separator str.split() would split on) inside
_USPACE = st.sampled_from(["\u00a0", "\u2028", "\u2029", "\u3000", "\u2009", "\u202f", "\u1680", "\u200b", "\u0085", "\x0b", "\x0c", "\x1c", "\x1f", "\ufeff"])
_WORD = st.text(alphabet=st.characters(categories=("L", "N", "P", "S")), min_size=1, max_size=4)
_spaced_token = st.one_of(_WORD, st.tuples(_WORD, _USPACE, _WORD).map("".join), st.tuples(_WORD, _USPACE).map("".join))
_conll_line = st.one_of(
    st.just(""), st.just("-DOCSTART- -X- -X- O"), st.just("   "),
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6), min_size=1, max_size=4).map(lambda c: " ".join(c)),
    st.lists(st.sampled_from(["EU", "B-ORG", "O", "I-PER", "\t", "x"]), min_size=1, max_size=4).map(lambda c: "\t".join(c)),
)
_SURROGATE_TEXT = st.text(alphabet=st.characters(categories=("Cs", "L", "Zs")), max_size=6)
_fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(_json_extreme.map(lambda v: '{"tokens": ["a"], "v": %s}' % v[0]), max_size=3).map(lambda ls: "\n".join(ls).encode()),
    st.tuples(st.lists(st.tuples(_spaced_token, st.sampled_from(["O", "B-PER", ""])).map(lambda t: f"{t[0]} {t[1]}".rstrip()), max_size=8), st.sampled_from(["\n", "\r", "\r\n"]), st.booleans()).map(
        lambda t: ("\ufeff" if t[2] else "") + t[1].join(t[0])
    ).map(lambda s: s.encode("utf-8")),
    st.lists(_conll_line, max_size=12).map(lambda ls: "\n".join(ls).encode("utf-8")),
    st.lists(st.one_of(st.just('{"tokens": ["a", "b"], "tags": ["O", "O"]}'), st.text(max_size=30), st.just('{"text": 5}'), st.just("[]")), max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
    # JSON records whose tokens or text carry escaped lone surrogates ("\ud800") among letters and spaces
    st.lists(st.one_of(
        st.lists(_SURROGATE_TEXT, min_size=1, max_size=3).map(lambda toks: json.dumps({"tokens": toks})),
        _SURROGATE_TEXT.map(lambda text: json.dumps({"text": text})),
    ), max_size=4).map(lambda ls: "\n".join(ls).encode("ascii")),
)


@FUZZ
@given(data=_fuzz_bytes, fmt=st.sampled_from(["conll", "jsonl", "text", "parquet"]), skip=st.booleans())
def test_fuzz_readers_never_crash(tmp_path, data, fmt, skip):
    path = tmp_path / f"fuzz.{fmt}"
    path.write_bytes(data)
    options = ReadOptions(on_error="skip" if skip else "fail")
    try:
        for sent in read(str(path), fmt, options):
            assert isinstance(sent.tokens, list)
            if sent.tags is not None:
                assert len(sent.tags) == len(sent.tokens)
            if sent.error is not None:
                assert skip and not sent.tokens
    except InputError as exc:
        assert str(exc).startswith(str(path))


@FUZZ
@given(value=_json_extreme, skip=st.booleans())
def test_fuzz_json_extremes(tmp_path, value, skip):
    """A JSON record with an extreme value is read and written back byte for byte (JSONL and the
    Parquet ``extra_json`` column), or refused with the reason, as an InputError at file:line."""
    from nerbatch.io import open_writer

    text, const, depth, digits = value
    path = tmp_path / "fuzz.jsonl"
    path.write_text('{"tokens": ["a"], "v": %s}\n' % text, encoding="ascii")
    reasons = []
    if const:
        reasons.append("is not a JSON value")
    if digits > 4300:
        reasons.append("an integer with more than 4300 digits")
    if depth + 1 > 300:  # where Python's recursion limit stops the parser depends on the stack
        reasons.append("nested too deeply")
    try:
        (sent,) = read(str(path), "jsonl", ReadOptions(on_error="skip" if skip else "fail"))
    except InputError as exc:
        assert not skip and str(exc).startswith(f"{path}:1: invalid JSON: ")
        assert any(r in str(exc) for r in reasons), (str(exc), reasons)
        event("refused: " + next(r for r in reasons if r in str(exc)))
        return
    if sent.error is not None:
        assert skip and any(r in sent.error for r in reasons), (sent.error, reasons)
        event("rejected (skip): " + next(r for r in reasons if r in sent.error))
        return
    event("read and written back byte for byte" + (" (nesting > 300)" if depth + 1 > 300 else ""))
    assert not const and digits <= 4300
    sent.pred = ["O"]
    out = tmp_path / "out.jsonl"
    with open_writer(str(out), "jsonl") as w:
        w.write(sent)
    line = out.read_text(encoding="ascii")
    assert line == '{"tokens": ["a"], "v": %s, "pred_tags": ["O"], "entities": []}\n' % text
    if depth < 300:
        def refuse(name):
            raise AssertionError(f"{name} written")

        assert json.loads(line, parse_constant=refuse)["pred_tags"] == ["O"]
    pq_out = tmp_path / "out.parquet"
    with open_writer(str(pq_out), "parquet", input_fmt="jsonl") as w:
        w.write(sent)
    assert pq.read_table(pq_out).column("extra_json").to_pylist() == ['{"v": %s}' % text]


@FUZZ
@given(
    sentences=st.lists(st.lists(st.tuples(_spaced_token, st.sampled_from(["O", "B-PER", "I-PER"])), min_size=1, max_size=5), min_size=1, max_size=4),
    eol=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
)
def test_fuzz_conll_unicode_spaces_in_tokens(tmp_path, sentences, eol, bom):
    """Only ASCII spaces and tabs separate columns; only CR/LF end lines (in any of the 3 styles)."""
    from nerbatch.io import open_writer

    tokens = [tok for sent in sentences for tok, _ in sent]
    text = (eol + eol).join(eol.join(f"{tok} {tag}" for tok, tag in sent) for sent in sentences) + eol
    path = tmp_path / "fuzz.conll"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    got = [s for s in read(str(path), "conll") if s.tokens]
    assert [s.tokens for s in got] == [[tok for tok, _ in sent] for sent in sentences]
    assert [s.tags for s in got] == [[tag for _, tag in sent] for sent in sentences]
    out = tmp_path / "out.conll"
    with open_writer(str(out), "conll") as w:
        for s in read(str(path), "conll"):
            s.pred = ["O"] * len(s.tokens)
            w.write(s)
    want = "\n\n".join("\n".join(f"{tok} {tag} O" for tok, tag in sent) for sent in sentences) + "\n"
    assert out.read_text(encoding="utf-8") == want
    assert len(tokens) == sum(len(s.tokens) for s in got)
