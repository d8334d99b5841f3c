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
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbatch.cli import cli
from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, read

CONLL = "EU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\n"


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
        if src.suffix == ".conll":  # line for line, one tag per token
            lines_in = src.read_bytes().decode("utf-8", "replace").lstrip("\ufeff").splitlines()
            lines_out = out.read_text(encoding="utf-8").splitlines()
            assert len(lines_in) == len(lines_out)


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
_conll_line = st.one_of(
    st.just(""), st.just("-DOCSTART- -X- -X- O"), st.just("   "),
    st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=6), min_size=1, max_size=4).map(lambda c: " ".join(c)),
    st.lists(st.sampled_from(["EU", "B-ORG", "O", "I-PER", "\t", "x"]), min_size=1, max_size=4).map(lambda c: "\t".join(c)),
)
_fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    st.lists(_conll_line, max_size=12).map(lambda ls: "\n".join(ls).encode("utf-8")),
    st.lists(st.one_of(st.just('{"tokens": ["a", "b"], "tags": ["O", "O"]}'), st.text(max_size=30), st.just('{"text": 5}'), st.just("[]")), max_size=6).map(lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass")),
)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
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
