"""Regression tests for the readers/writers items of the hardening issue (#16).

Real files under ``tmp_path``, real pyarrow; the CLI tests use the tiny random model of conftest.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.core.record import Sentence
from nerbatch.errors import InputError
from nerbatch.io import input_format, open_writer, read
from nerbatch.io.base import ReadOptions
from nerbatch.io.parquet import BYTES_PER_GROUP, ParquetWriter

ROOT = Path(__file__).resolve().parent.parent


def strict_json(text: str):
    """json.loads that refuses NaN/Infinity, as every strict JSON parser does."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def predict(sentence: Sentence) -> list[str]:
    return ["B-X"] + ["I-X"] * (len(sentence.tokens) - 1) if sentence.tokens else []


def convert(src: Path, dst: Path, fmt: str, options: ReadOptions = ReadOptions(), input_fmt: str | None = None) -> list[Sentence]:
    sentences = list(read(str(src), input_fmt, options))
    in_fmt = input_fmt or input_format(str(src), None)
    with open_writer(str(dst), fmt, input_path=str(src), input_fmt=in_fmt) as w:
        for s in sentences:
            s.pred = predict(s)
            w.write(s)
    return sentences


def read_error(path: Path, options: ReadOptions = ReadOptions(), fmt: str | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        list(read(str(path), fmt, options))
    return info.value


# --------------------------------------------------------------------------- #
# 8. JSONL passthrough is lossless; JSONL -> Parquet keeps the other keys
# --------------------------------------------------------------------------- #

NUMBERS = (
    '{"id": 7, "x": 1e5, "y": 1.10, "big": 3.14159265358979323846264338327950288419716939937510,'
    ' "huge": 123456789012345678901234567890123456789, "neg0": -0, "negf": -0.0, "e": 1E+2, "tiny": 1e-400,'
    ' "over": 1e400, "nested": {"a": [1.0, 2.50, {"b": 1e-7}]}, "source": "wiki", "tokens": ["EU", "rejects"]}'
)
RAW_MEMBERS = [
    '"id": 7', '"x": 1e5', '"y": 1.10', '"big": 3.14159265358979323846264338327950288419716939937510',
    '"huge": 123456789012345678901234567890123456789', '"neg0": -0', '"negf": -0.0', '"e": 1E+2',
    '"tiny": 1e-400', '"over": 1e400', '"nested": {"a": [1.0, 2.50, {"b": 1e-7}]}', '"source": "wiki"',
]


def test_jsonl_passthrough_keeps_the_number_text(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(NUMBERS + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    convert(src, out, "jsonl")
    line = out.read_text(encoding="utf-8")
    for member in RAW_MEMBERS:
        assert member in line
    obj = strict_json(line)  # valid JSON (1e400 stays 1e400 text: JSON numbers have no range)
    assert obj["pred_tags"] == ["B-X", "I-X"] and obj["tokens"] == ["EU", "rejects"]


def test_jsonl_passthrough_values_still_compare_as_python_values(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(NUMBERS + "\n", encoding="utf-8")
    (s,) = read(str(src))
    assert s.source == json.loads(NUMBERS)
    assert s.source["x"] == 100000.0 and s.source["y"] == 1.1


def test_jsonl_changed_member_is_written_from_its_value(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"tokens": ["a"], "x": 1.10, "pred_tags": ["old"], "entities": 1}\n', encoding="utf-8")
    (s,) = read(str(src))
    s.source["x"] = 2.5
    s.pred = ["O"]
    out = tmp_path / "out.jsonl"
    with open_writer(str(out), "jsonl") as w:
        w.write(s)
    text = out.read_text(encoding="utf-8")
    assert text == '{"tokens": ["a"], "x": 2.5, "pred_tags": ["O"], "entities": []}\n'


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_jsonl_nan_and_infinity_are_refused(tmp_path, constant):
    src = tmp_path / "in.jsonl"
    src.write_text('{"tokens": ["a"]}\n{"tokens": ["b"], "score": [1, %s]}\n{"tokens": ["c"]}\n' % constant, encoding="utf-8")
    err = read_error(src)
    assert str(err).startswith(f"{src}:2: invalid JSON: {constant} is not a JSON value")
    assert err.hint and "null" in err.hint
    # under skip the record is rejected and reading goes on; no output line is invalid JSON
    sentences = list(read(str(src), options=ReadOptions(on_error="skip")))
    assert [s.tokens for s in sentences] == [["a"], [], ["c"]] and sentences[1].error
    out = tmp_path / "out.jsonl"
    convert(src, out, "jsonl", ReadOptions(on_error="skip"))
    assert [strict_json(x)["tokens"] for x in out.read_text().splitlines()] == [["a"], ["c"]]


def test_jsonl_to_parquet_keeps_the_other_keys(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"tokens": ["b"], "tags": ["O"], "doc_id": "d1", "id": "x-2", "pred_tags": ["stale"], "entities": []}\n'
        + NUMBERS + "\n"
        '{"tokens": ["c"], "doc_id": 5, "ner_tags": ["B-X"]}\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.parquet"
    convert(src, out, "parquet")
    table = pq.read_table(out)
    assert table.column_names == ["doc_id", "index", "tokens", "tags", "extra_json", "pred_tags", "pred_scores"]
    rows = table.to_pylist()
    extra = [r["extra_json"] for r in rows]
    # tags/doc_id in their columns; pred_tags replaced by the column of this run; entities kept (issue #22)
    assert strict_json(extra[0]) == {"id": "x-2", "entities": []}
    assert rows[0]["doc_id"] == "d1" and rows[0]["tags"] == ["O"]
    for member in RAW_MEMBERS:  # the original text, not a float's repr
        assert member in extra[1]
    assert "tokens" not in strict_json(extra[1])  # it has its own column
    assert extra[2] == '{"doc_id": 5}' and rows[2]["doc_id"] == "5"  # the column is a string: the number is kept too
    assert rows[2]["tags"] == ["B-X"]  # ner_tags: in the tags column
    assert rows[2]["pred_tags"] == ["B-X"]


def test_jsonl_to_parquet_empty_input_has_the_column(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text("", encoding="utf-8")
    out = tmp_path / "out.parquet"
    convert(src, out, "parquet")
    assert "extra_json" in pq.read_schema(out).names


# --------------------------------------------------------------------------- #
# 11. CR-only line ends; CoNLL-U
# --------------------------------------------------------------------------- #

CONLL = "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n"


@pytest.mark.parametrize("fmt", ["conll", "text", "jsonl"])
def test_cr_only_line_ends_are_line_ends(tmp_path, fmt):
    lf = {
        "conll": CONLL,
        "text": "EU rejects German\n\nPeter Blackburn\n",
        "jsonl": '{"tokens": ["EU", "rejects"]}\n\n{"tokens": ["Peter"]}\n',
    }[fmt]
    a = tmp_path / f"lf.{fmt}"
    b = tmp_path / f"cr.{fmt}"
    a.write_bytes(lf.encode())
    b.write_bytes(lf.replace("\n", "\r").encode())
    want = [(s.tokens, s.tags, s.line) for s in read(str(a))]
    got = [(s.tokens, s.tags, s.line) for s in read(str(b))]
    assert got == want and len([t for t, _, _ in got if t]) == 2


def test_cr_only_file_longer_than_one_read(tmp_path):
    """CR-only files are read in chunks: lines across chunk ends, an error's line number."""
    lines = [f"w{i} O" if i % 7 else "" for i in range(30_000)]
    lines[29_990] = "bad line here"
    path = tmp_path / "mac.conll"
    path.write_bytes("\r".join(lines).encode())
    err = read_error(path)
    assert str(err).startswith(f"{path}:29991: expected 2 columns")
    del lines[29_990]
    path.write_bytes("\r".join(lines).encode())
    sentences = [s for s in read(str(path)) if s.tokens]
    assert sum(len(s.tokens) for s in sentences) == sum(1 for x in lines if x)
    assert sentences[-1].tokens[-1] == "w29999"


def test_cr_only_mirror_output_has_lf(tmp_path):
    src = tmp_path / "cr.conll"
    src.write_bytes(CONLL.replace("\n", "\r").encode())
    out = tmp_path / "out.conll"
    convert(src, out, "conll")
    assert out.read_text(encoding="utf-8") == (
        "-DOCSTART- -X- O O\n\nEU NNP B-ORG B-X\nrejects VBZ O I-X\n\nPeter NNP B-PER B-X\nBlackburn NNP I-PER I-X\n"
    )


def test_lone_cr_inside_a_line_of_an_lf_file_is_unchanged(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(b"EU rejects\nGerman\rcall\n")  # first line ends in LF: an LF file
    assert [s.tokens for s in read(str(path), "text")] == [["EU", "rejects"], ["German", "call"]]


CONLLU = (
    "# newdoc id = d1\n"
    "# sent_id = 1\n"
    "# text = Vámonos al mar.\n"
    "1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "1\tVamos\tir\tVERB\t_\t_\t0\troot\t_\t_\n"
    "2\tnos\tnosotros\tPRON\t_\t_\t1\tobj\t_\t_\n"
    "3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "3\ta\ta\tADP\t_\t_\t5\tcase\t_\t_\n"
    "4\tel\tel\tDET\t_\t_\t5\tdet\t_\t_\n"
    "4.1\tvoy\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "5\tmar\tmar\tNOUN\t_\t_\t1\tobl\t_\tSpaceAfter=No\n"
    "6\t.\t.\tPUNCT\t_\t_\t1\tpunct\t_\t_\n"
    "\n"
    "# sent_id = 2\n"
    "1\tHola\thola\tINTJ\t_\t_\t0\troot\t_\t_\n"
    "\n"
)


def test_conllu_reads_the_form_column_and_skips_comments(tmp_path):
    path = tmp_path / "es.conllu"
    path.write_text(CONLLU, encoding="utf-8")
    sentences = [s for s in read(str(path)) if s.tokens]
    assert [s.tokens for s in sentences] == [["Vamos", "nos", "a", "el", "mar", "."], ["Hola"]]
    assert all(s.tags is None for s in sentences)  # no NER column in CoNLL-U
    assert sentences[0].prefix == ["# newdoc id = d1", "# sent_id = 1", "# text = Vámonos al mar."]
    assert sentences[1].prefix == ["", "# sent_id = 2"]
    # the same file under another name, CoNLL-U by option
    other = tmp_path / "es.txt"
    other.write_text(CONLLU, encoding="utf-8")
    got = [s.tokens for s in read(str(other), "conll", ReadOptions(conllu=True)) if s.tokens]
    assert got == [s.tokens for s in sentences]


def test_conllu_output_keeps_every_line(tmp_path):
    src = tmp_path / "es.conllu"
    src.write_text(CONLLU, encoding="utf-8")
    out = tmp_path / "out.conllu"
    convert(src, out, "conll")
    got = out.read_text(encoding="utf-8").split("\n")
    want = CONLLU.split("\n")
    assert len(got) == len(want)
    tags = iter(["B-X", "I-X", "I-X", "I-X", "I-X", "I-X", "B-X"])
    for a, b in zip(want, got, strict=True):
        if not a or a.startswith("#"):
            assert b == a
        elif "-" in a.split("\t")[0] or "." in a.split("\t")[0]:
            assert b == a + "\t_"
        else:
            assert b == a + "\t" + next(tags)
    # and it reads back with the predictions in the last column
    back = [s for s in read(str(out), options=ReadOptions(tag_column=None, pred_column=-1)) if s.tokens]
    assert [s.pred for s in back] == [["B-X"] + ["I-X"] * 5, ["B-X"]]


def test_conllu_with_a_named_ner_column(tmp_path):
    path = tmp_path / "ner.conllu"
    path.write_text("# sent_id = 1\n1\tEU\tB-ORG\n1-2\tx\tO\n2\trejects\tO\n", encoding="utf-8")
    (s,) = [s for s in read(str(path), options=ReadOptions(tag_column=2)) if s.tokens]
    assert s.tokens == ["EU", "rejects"] and s.tags == ["B-ORG", "O"]


# --------------------------------------------------------------------------- #
# 12. deep nesting, huge integers: input errors
# --------------------------------------------------------------------------- #

DEEP = '{"tokens": ["a"], "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
DEEP_TOP = "[" * 100_000
HUGE_INT = '{"tokens": ["a"], "x": 1' + "0" * 1_000_000 + "}"


@pytest.mark.parametrize(
    "line, needle",
    [
        (DEEP, "nested too deeply"),
        (DEEP_TOP, "nested too deeply"),
        (HUGE_INT, "an integer with more than 4300 digits"),
    ],
    ids=["deep value", "deep top level", "1e6-digit integer"],
)
def test_json_extremes_are_input_errors(tmp_path, line, needle):
    path = tmp_path / "x.jsonl"
    path.write_text('{"tokens": ["ok"]}\n' + line + '\n{"tokens": ["after"]}\n', encoding="utf-8")
    err = read_error(path)
    assert str(err).startswith(f"{path}:2: invalid JSON: ") and needle in str(err)
    sentences = list(read(str(path), options=ReadOptions(on_error="skip")))
    assert [s.tokens for s in sentences] == [["ok"], [], ["after"]]
    assert needle in sentences[1].error


def test_json_extremes_with_skip_leave_no_part_files(tiny_model, tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text('{"tokens": ["ok"]}\n' + DEEP + "\n" + HUGE_INT + '\n{"tokens": ["after"]}\n', encoding="utf-8")
    outdir = tmp_path / "out"
    outdir.mkdir()
    out = outdir / "r.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--on-error", "skip"])
    assert res.exit_code == 3, res.output
    left = sorted(os.listdir(outdir))
    assert "r.jsonl" in left and not [n for n in left if ".part" in n]
    assert [json.loads(x)["tokens"] for x in out.read_text().splitlines()] == [["ok"], ["after"]]
    (rejects_file,) = [n for n in left if "rejects" in n]
    rejects = [json.loads(x) for x in (outdir / rejects_file).read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3]
    # without skip: exit 2, one line, nothing left behind
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(outdir / "s.jsonl"), "--model", tiny_model, "-q"])
    assert res.exit_code == 2 and f"{src}:2: invalid JSON" in res.stderr
    assert sorted(os.listdir(outdir)) == left


# --------------------------------------------------------------------------- #
# 13. Parquet -> JSONL with timestamps, dates, decimals, binary
# --------------------------------------------------------------------------- #


def test_parquet_to_jsonl_serialises_arrow_types(tmp_path):
    helsinki = dt.timezone(dt.timedelta(hours=2))
    table = pa.table(
        {
            "tokens": pa.array([["EU", "rejects"]], pa.list_(pa.string())),
            "ts_s": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("s")),
            "ts_us_tz": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=helsinki)], pa.timestamp("us", tz="+02:00")),
            "ts_ns": pa.array([1_700_000_000_123_456_789], pa.timestamp("ns")),
            "ts_ms_utc": pa.array([0], pa.timestamp("ms", tz="UTC")),
            "d32": pa.array([dt.date(2024, 2, 29)], pa.date32()),
            "d64": pa.array([dt.date(1999, 12, 31)], pa.date64()),
            "t64": pa.array([dt.time(13, 14, 15, 16)], pa.time64("us")),
            "dur": pa.array([1_500_000_001], pa.duration("ns")),
            "dur_neg": pa.array([dt.timedelta(days=-1)], pa.duration("us")),
            "dec": pa.array([decimal.Decimal("1.10")], pa.decimal128(10, 2)),
            "dec_big": pa.array([decimal.Decimal("12345678901234567890.123456789012345678")], pa.decimal128(38, 18)),
            "dec256": pa.array([decimal.Decimal("-0.000001")], pa.decimal256(40, 6)),
            "bin": pa.array([b"\x00\xffnerbatch"], pa.binary()),
            "lbin": pa.array([b"\x01"], pa.large_binary()),
            "fsb": pa.array([b"ab"], pa.binary(2)),
            "nan": pa.array([float("nan")], pa.float64()),
            "inf": pa.array([float("-inf")], pa.float32()),
            "nested": pa.array(
                [{"when": dt.datetime(2020, 5, 6), "vals": [decimal.Decimal("2.5")]}],
                pa.struct([("when", pa.timestamp("ms")), ("vals", pa.list_(pa.decimal128(4, 1)))]),
            ),
            "dates": pa.array([[dt.date(2000, 1, 1), None]], pa.list_(pa.date32())),
            "m": pa.array([[("k", b"v")]], pa.map_(pa.string(), pa.binary())),
        }
    )
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    out = tmp_path / "out.jsonl"
    convert(src, out, "jsonl")
    obj = strict_json(out.read_text(encoding="utf-8"))
    assert obj["ts_s"] == "2024-01-02T03:04:05"
    assert obj["ts_us_tz"] == "2024-01-02T03:04:05.123456+02:00"
    assert obj["ts_ns"] == "2023-11-14T22:13:20.123456789"
    assert obj["ts_ms_utc"] == "1970-01-01T00:00:00+00:00"
    assert obj["d32"] == "2024-02-29" and obj["d64"] == "1999-12-31"
    assert obj["t64"] == "13:14:15.000016"
    assert obj["dur"] == "PT1.500000001S" and obj["dur_neg"] == "-PT86400S"
    assert obj["dec"] == "1.10" and obj["dec_big"] == "12345678901234567890.123456789012345678"
    assert obj["dec256"] == "-0.000001"
    assert base64.b64decode(obj["bin"]) == b"\x00\xffnerbatch"
    assert base64.b64decode(obj["lbin"]) == b"\x01" and base64.b64decode(obj["fsb"]) == b"ab"
    assert obj["nan"] is None and obj["inf"] is None
    assert obj["nested"] == {"when": "2020-05-06T00:00:00", "vals": ["2.5"]}
    assert obj["dates"] == ["2000-01-01", None]
    assert obj["m"] == [["k", base64.b64encode(b"v").decode()]]
    assert obj["pred_tags"] == ["B-X", "I-X"]


def test_parquet_row_that_cannot_be_converted_is_an_input_error(tmp_path):
    table = pa.table({"tokens": [["a"], ["b"], ["c"]], "day": pa.array([0, 2_000_000_000, 1], pa.date32())})
    src = tmp_path / "in.parquet"
    pq.write_table(table, src)
    err = read_error(src)
    assert str(err).startswith(f"{src}:2: cannot read this row")
    sentences = list(read(str(src), options=ReadOptions(on_error="skip")))
    assert [s.tokens for s in sentences] == [["a"], [], ["c"]] and sentences[1].error


# --------------------------------------------------------------------------- #
# 16. Unicode spaces inside CoNLL tokens; a byte-order mark in the middle of a file
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("space", ["\u00a0", "\u2028", "\u3000", "\u2009", "\u0085", "\x0b", "\x1c"])
def test_conll_unicode_space_stays_in_the_token(tmp_path, space):
    text = f"New{space}York NNP B-LOC\nis VBZ O\n\n{space} SYM O\n"
    path = tmp_path / "u.conll"
    path.write_text(text, encoding="utf-8")
    sentences = [s for s in read(str(path)) if s.tokens]
    assert [s.tokens for s in sentences] == [[f"New{space}York", "is"], [space]]
    assert [s.tags for s in sentences] == [["B-LOC", "O"], ["O"]]
    out = tmp_path / "out.conll"
    convert(path, out, "conll")
    assert out.read_text(encoding="utf-8").split("\n") == [
        f"New{space}York NNP B-LOC B-X", "is VBZ O I-X", "", f"{space} SYM O B-X", ""
    ]


def test_txt_sniffing_splits_like_the_reader(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("EU\u00a0B-ORG\nrejects\u00a0O\n", encoding="utf-8")  # one column for the CoNLL reader
    assert input_format(str(path), None) == "text"
    path.write_text("EU\u00a0x B-ORG\nrejects O\n", encoding="utf-8")
    assert input_format(str(path), None) == "conll"
    assert [s.tokens for s in read(str(path))] == [["EU\u00a0x", "rejects"]]


@pytest.mark.parametrize("fmt, first", [("conll", "EU B-ORG"), ("jsonl", '{"tokens": ["EU"]}'), ("text", "EU rejects")])
def test_byte_order_mark_in_the_middle_is_named(tmp_path, fmt, first):
    path = tmp_path / f"cat.{fmt}"
    part = (first + "\n").encode()
    path.write_bytes(b"\xef\xbb\xbf" + part + b"\n" + b"\xef\xbb\xbf" + part)  # cat a b, both with a BOM
    err = read_error(path)
    assert str(err).startswith(f"{path}:3: a byte-order mark (U+FEFF) in the middle of the file: concatenated files?")
    assert err.line == 3 and "utf-8-sig" in err.hint
    # the way out that the hint names
    got = [s.tokens for s in read(str(path), options=ReadOptions(encoding="utf-8-sig")) if s.tokens]
    assert len(got) == 2 and got[0] == got[1]
    # under skip: that record is rejected, the rest is read
    sentences = [s for s in read(str(path), options=ReadOptions(on_error="skip")) if s.tokens or s.error]
    assert sentences[0].tokens and sentences[1].error and "byte-order mark" in sentences[1].error


# --------------------------------------------------------------------------- #
# 18. output files get the user's umask, not mkstemp's 0600
# --------------------------------------------------------------------------- #

UMASK_SCRIPT = """
import os, stat, sys
os.umask(int(sys.argv[1], 8))
from nerbatch.io import open_writer
from nerbatch.io.base import AtomicOutput
from nerbatch.core.record import Sentence
folder = sys.argv[2]
for fmt in ("conll", "jsonl", "html", "parquet"):
    with open_writer(os.path.join(folder, "out." + fmt), fmt) as w:
        w.write(Sentence(tokens=["a"], pred=["O"]))
out = AtomicOutput(os.path.join(folder, "plain.txt"))
out.write("x")
out.commit()
print(" ".join(f"{n}={stat.S_IMODE(os.stat(os.path.join(folder, n)).st_mode):o}" for n in sorted(os.listdir(folder))))
"""


@pytest.mark.parametrize("umask, mode", [("022", "644"), ("002", "664"), ("077", "600")])
def test_outputs_are_created_with_the_umask(tmp_path, umask, mode):
    res = subprocess.run(
        [sys.executable, "-c", UMASK_SCRIPT, umask, str(tmp_path)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    names = ["out.conll", "out.html", "out.jsonl", "out.parquet", "plain.txt"]
    assert res.stdout.split() == [f"{n}={mode}" for n in names]


# --------------------------------------------------------------------------- #
# 20. the Parquet writer bounds its buffer in bytes, not only rows
# --------------------------------------------------------------------------- #

MB = 1 << 20


def wide(i: int, token: str) -> Sentence:
    return Sentence(tokens=[token, f"w{i}"], doc_id="0", index=i, pred=["O", "O"], scores=[0.5, 0.5])


def test_parquet_writer_flushes_wide_rows_by_bytes(tmp_path):
    token = "x" * MB  # one object: the test itself holds 1 MB
    out = tmp_path / "wide.parquet"
    w = ParquetWriter(str(out), bytes_per_group=4 * MB)
    peak = 0
    with w:
        for i in range(12):
            w.write(wide(i, token))
            peak = max(peak, w.buffered)
    assert peak < 5 * MB  # never more than the bound plus one row
    pf = pq.ParquetFile(out)
    assert pf.metadata.num_rows == 12
    assert pf.num_row_groups == 3
    assert [pf.metadata.row_group(i).num_rows for i in range(3)] == [4, 4, 4]
    assert pf.read().column("tokens").to_pylist()[11] == [token, "w11"]


def test_parquet_writer_default_bound_is_64_mb(tmp_path):
    assert BYTES_PER_GROUP == 64 * MB
    token = "y" * MB
    out = tmp_path / "wide.parquet"
    with open_writer(str(out), "parquet") as w:
        for i in range(70):
            w.write(wide(i, token))
    pf = pq.ParquetFile(out)
    assert pf.metadata.num_rows == 70
    assert pf.num_row_groups == 2 and pf.metadata.row_group(0).num_rows == 64


def test_parquet_writer_still_flushes_by_rows(tmp_path):
    out = tmp_path / "narrow.parquet"
    with ParquetWriter(str(out), rows_per_group=10) as w:
        for i in range(25):
            w.write(wide(i, "z"))
    assert pq.ParquetFile(out).num_row_groups == 3
