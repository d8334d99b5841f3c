"""Reading hostile inputs: truncated zstd files, over-long lines and sentences, FIFOs in input
folders, wide Parquet rows, lone surrogates, and the errors that must say what is wrong."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import nerbatch
from nerbatch.cli import cli
from nerbatch.errors import InputError
from nerbatch.io import read
from nerbatch.io.base import Overlong, ReadOptions, raw_lines
from nerbatch.io.conll import PASSTHROUGH_RUN

from ..conftest import SAMPLE

zstandard = pytest.importorskip("zstandard")


def run(*args: str) -> tuple[int, str]:
    """A CLI command's exit code and output (stdout and stderr); a traceback fails the test."""
    res = CliRunner().invoke(cli, list(args))
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def conll_lines(n: int, start: int = 0) -> bytes:
    """``n`` token lines of five columns, a blank line after every tenth."""
    return b"".join(
        b"w%d NN B-NP O O\n" % i + (b"\n" if i % 10 == 9 else b"") for i in range(start, start + n)
    )


# -- item 5: a truncated .zst input ---------------------------------------------------------------

def _zst(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


TRUNCATED = {
    # two frames, the second cut in half: zstandard's reader gave the first frame's lines, exit 0
    "second frame cut": lambda: _zst(conll_lines(4000)) + _half(_zst(conll_lines(4000, 4000))),
    # one frame cut in half: an empty output, exit 0
    "one frame cut": lambda: _half(_zst(conll_lines(4000))),
    # cut inside the last block, mid-line: "expected 5 columns like the first token line"
    "cut mid-block": lambda: _zst(conll_lines(40000))[:-7],
}


@pytest.mark.parametrize("case", sorted(TRUNCATED))
def test_truncated_zstd_is_an_error_like_gzip(case, tmp_path):
    bad = tmp_path / "bad.conll.zst"
    bad.write_bytes(TRUNCATED[case]())
    with pytest.raises(InputError) as err:
        list(read(str(bad)))
    message = str(err.value)
    assert message.startswith(f"{bad}:") and "corrupt zstd data at decompressed line" in message
    assert "truncated" in message and "columns" not in message


def test_truncated_zstd_fails_tag_with_no_output(tiny_model, tmp_path):
    bad = tmp_path / "bad.conll.zst"
    bad.write_bytes(TRUNCATED["second frame cut"]())
    out = tmp_path / "out"
    out.mkdir()
    code, output = run("tag", str(bad), "-o", str(out / "bad.conll"), "--model", tiny_model, "-q")
    assert code == 2, output
    assert len(output.strip().splitlines()) == 1 and "corrupt zstd data" in output
    assert os.listdir(out) == []


def test_complete_zstd_frames_read_whole(tmp_path):
    """Several frames (and empty ones) in one file read as their concatenation."""
    good = tmp_path / "good.conll.zst"
    empty = _zst(b"")
    good.write_bytes(empty + _zst(conll_lines(50)) + empty + _zst(conll_lines(50, 50)) + empty)
    plain = tmp_path / "good.conll"
    plain.write_bytes(conll_lines(100))
    assert [s.tokens for s in read(str(good))] == [s.tokens for s in read(str(plain))]


# -- item 14: a FIFO inside an input folder ---------------------------------------------------------

def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command in its own process: a run that hangs fails the test instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-m", "nerbatch", *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def folder_with_fifo(tmp_path) -> Path:
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.conll").write_text("Turku B-LOC B-LOC\nis O O\n\n", encoding="utf-8")
    os.mkfifo(folder / "stuck.conll")  # nobody ever writes to it: opening it would wait forever
    os.mkfifo(folder / "sub" / "more.conll")
    return folder


def test_fifo_in_an_input_folder_is_skipped_by_tag(folder_with_fifo, tiny_model, tmp_path):
    out = tmp_path / "out"
    res = _cli("tag", str(folder_with_fifo), "-o", str(out), "--model", tiny_model, "--no-compile", "--precision", "fp32")
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")) == ["a.conll"]
    assert "skipped 2 input(s) that are not regular files" in res.stderr
    assert str(folder_with_fifo / "stuck.conll") in res.stderr
    quiet = _cli("tag", str(folder_with_fifo), "-o", str(tmp_path / "q"), "--model", tiny_model, "-q", "--no-compile")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_fifo_in_an_input_folder_is_skipped_by_evaluate(folder_with_fifo):
    res = _cli("evaluate", str(folder_with_fifo), "--bootstrap", "0")
    assert res.returncode == 0, res.stderr
    assert "skipped 2 input(s) that are not regular files" in res.stderr
    assert "processed 2 tokens" in res.stdout


# -- item 17: a lone surrogate in JSONL tokens or text ----------------------------------------------

SURROGATE_RECORDS = {
    "tokens": '{"tokens": ["Turku", "\\ud800"]}\n',
    "text": '{"text": "Turku \\udfff is"}\n',
}


@pytest.mark.parametrize("key", sorted(SURROGATE_RECORDS))
def test_lone_surrogate_fails_tag_with_file_and_line(key, tiny_model, tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"tokens": ["is"]}\n' + SURROGATE_RECORDS[key], encoding="utf-8")
    code, output = run("tag", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", tiny_model, "-q")
    assert code == 2, output
    assert output.strip().splitlines() == [output.strip()]
    assert f"{src}:2: '{key}' holds a lone surrogate" in output
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("key", sorted(SURROGATE_RECORDS))
def test_lone_surrogate_is_a_reject_under_skip(key, tiny_model, tmp_path):
    src = tmp_path / "s.jsonl"
    src.write_text('{"tokens": ["is"]}\n' + SURROGATE_RECORDS[key] + '{"tokens": ["a"]}\n', encoding="utf-8")
    out = tmp_path / "o.jsonl"
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--on-error", "skip")
    assert code == 3, output
    assert [json.loads(line)["tokens"] for line in out.read_text(encoding="utf-8").splitlines()] == [["is"], ["a"]]
    rejects = [json.loads(line) for line in Path(f"{out}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], "lone surrogate" in r["error"]) for r in rejects] == [(2, True)]


def test_lone_surrogate_fails_train_with_file_and_line(tiny_model, tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text('{"tokens": ["Turku"], "tags": ["B-LOC"]}\n{"tokens": ["\\ud800x"], "tags": ["O"]}\n', encoding="utf-8")
    code, output = run("train", "--train", str(src), "-o", str(tmp_path / "m"), "--base-model", tiny_model, "--epochs", "1", "-q")
    assert code == 2, output
    assert f"{src}:2: 'tokens' holds a lone surrogate" in output


# -- item 18: errors that say what is wrong ---------------------------------------------------------

@pytest.fixture
def model_copy(tiny_model, tmp_path) -> Path:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model, folder)
    return folder


@pytest.mark.parametrize(
    "content, says",
    [("[1, 2]", "config.json: holds a JSON list, not the object"), ("{bad", "config.json: not valid JSON"), ("", "config.json: not valid JSON")],
)
def test_config_json_that_is_not_an_object_is_named(content, says, model_copy, tmp_path):
    (model_copy / "config.json").write_text(content, encoding="utf-8")
    code, output = run("tag", str(SAMPLE / "sentences.txt"), "--model", str(model_copy), "-q")
    assert code == 2 and says in output and "no config.json" not in output, output


def test_label_count_that_does_not_match_the_weights_is_named(model_copy):
    config = json.loads((model_copy / "config.json").read_text(encoding="utf-8"))
    labels = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    config["id2label"] = dict(enumerate(labels))
    config["label2id"] = {label: i for i, label in enumerate(labels)}
    (model_copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    code, output = run("tag", str(SAMPLE / "sentences.txt"), "--model", str(model_copy), "-q", "--precision", "fp32")
    assert code == 2, output
    assert "names 5 labels (id2label) but the weights' classifier has 9 outputs" in output
    assert "above report" not in output


@pytest.fixture(scope="module")
def saved_datasets(tmp_path_factory) -> Path:
    datasets = pytest.importorskip("datasets")
    folder = tmp_path_factory.mktemp("saved")
    ds = datasets.Dataset.from_dict({"tokens": [["Turku", "is"]], "tags": [["B-LOC", "O"]], "pred_tags": [["B-LOC", "O"]]})
    ds.save_to_disk(str(folder / "one"))
    datasets.DatasetDict({"train": ds, "test": ds}).save_to_disk(str(folder / "dict"))
    return folder


@pytest.mark.parametrize(
    "remove, where, says",
    [
        ("one/state.json", "one", "a Hugging Face save_to_disk folder without its state.json"),
        ("dict/dataset_dict.json", "dict/test", "a split of a Hugging Face save_to_disk DatasetDict whose dataset_dict.json is missing"),
    ],
)
def test_save_to_disk_folder_with_a_file_missing_says_which(remove, where, says, saved_datasets, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(saved_datasets, copy)
    os.unlink(copy / remove)
    top = copy / remove.split("/")[0]
    code, output = run("evaluate", str(top), "--bootstrap", "0")
    assert code == 2, output
    assert f"{copy / where}: {says}" in output and "invalid JSON" not in output
    assert run("evaluate", str(saved_datasets / "one"), "--bootstrap", "0")[0] == 0  # the complete one reads


@pytest.mark.parametrize("option", ["--report", "--report-json", "--log-json"])
def test_report_path_that_is_a_folder_is_refused_before_tagging(option, tiny_model, tmp_path):
    folder = tmp_path / "reports"
    folder.mkdir()
    out = tmp_path / "out.conll"
    code, output = run("tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q", option, str(folder))
    assert code == 2, output
    assert f"{option} {folder}: is a folder, not a file" in output
    assert not out.exists() and os.listdir(folder) == []


def test_evaluate_report_path_that_is_a_folder_is_refused(tmp_path):
    tagged = tmp_path / "t.conll"
    tagged.write_text("Turku B-LOC B-LOC\n\n", encoding="utf-8")
    code, output = run("evaluate", str(tagged), "--json", str(tmp_path))
    assert code == 2 and f"--json {tmp_path}: is a folder, not a file" in output, output
    assert "processed" not in output  # refused before scoring


# -- item 13: what one line and one sentence may hold -----------------------------------------------

def test_an_overlong_line_is_refused_without_reading_it_whole():
    """The reader stops a bound's worth into the line: a decompression bomb of one line never fills
    the memory (the line here is 8 MB; the bound 1 KiB)."""
    stream = io.BufferedReader(io.BytesIO(b"short\n" + b"x" * (8 << 20) + b"\nafter\n"))
    lines = raw_lines(stream, 1024)
    assert next(lines) == b"short\n"
    long = next(lines)
    assert isinstance(long, Overlong)
    assert stream.tell() < 100_000  # refused after reading about 1 KiB of the 8 MB line
    assert next(lines) == b"after\n" and long.length == (8 << 20) + 1  # then read past, not held


@pytest.mark.parametrize("fmt, line", [("txt", "word " * 400), ("jsonl", '{"text": "%s"}' % ("word " * 400)), ("conll", "w" * 2000 + " O")])
def test_overlong_line_fails_tag_at_its_line(fmt, line, tiny_model, tmp_path):
    src = tmp_path / f"in.{fmt}"
    good = {"txt": "Turku is", "jsonl": '{"tokens": ["Turku"]}', "conll": "Turku O\n"}[fmt]
    src.write_text(f"{good}\n{line}\n{good}\n", encoding="utf-8")
    out = tmp_path / f"out.{fmt}"
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-line-bytes", "1K")
    assert code == 2, output
    assert f"{src}:{3 if fmt == 'conll' else 2}: a line longer than 1,024 bytes (--max-line-bytes)" in output
    assert not out.exists()
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-line-bytes", "4K")
    assert code == 0, output  # under the bound it reads


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "conll"])
def test_overlong_line_is_a_reject_under_skip(fmt, tiny_model, tmp_path):
    src = tmp_path / f"in.{fmt}"
    if fmt == "conll":
        src.write_text("Turku O\n\n" + "w" * 5000 + " O\nx O\n\nis O\n", encoding="utf-8")
    elif fmt == "jsonl":
        src.write_text('{"tokens": ["Turku"]}\n{"tokens": ["%s"]}\n{"tokens": ["is"]}\n' % ("w" * 5000), encoding="utf-8")
    else:
        src.write_text("Turku\n" + "w " * 2500 + "\nis\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-line-bytes", "1K", "--on-error", "skip")
    assert code == 3, output
    assert [json.loads(x)["tokens"] for x in out.read_text(encoding="utf-8").splitlines()] == [["Turku"], ["is"]]
    (reject,) = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert reject["line"] == (3 if fmt == "conll" else 2) and "(--max-line-bytes)" in reject["error"]


def test_max_line_bytes_takes_sizes(tiny_model, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("Turku is\n", encoding="utf-8")
    code, output = run("tag", str(src), "--model", tiny_model, "-q", "--max-line-bytes", "lots")
    assert code == 2 and "'lots' is not a size in bytes" in output, output
    assert run("tag", str(src), "--model", tiny_model, "-q", "--max-line-bytes", "2M")[0] == 0


def test_sentence_without_breaks_fails_while_it_is_read(tmp_path):
    """A CoNLL file without blank lines is refused at the line that passes the bound, before the rest
    of the file is read (a bomb of token lines never fills the memory)."""
    src = tmp_path / "flat.conll"
    src.write_bytes(b"".join(b"w%d O\n" % i for i in range(5000)))
    sentences = read(str(src), options=ReadOptions(max_sentence_tokens=1000))
    with pytest.raises(InputError, match=r"flat\.conll:1001: a sentence of more than 1,000 lines \(--max-sentence-tokens\)"):
        next(sentences)


@pytest.mark.parametrize("fmt", ["conll", "jsonl", "txt", "parquet"])
def test_overlong_sentence_fails_tag_or_is_a_reject(fmt, tiny_model, tmp_path):
    long = [f"w{i}" for i in range(300)]
    src = tmp_path / f"in.{fmt}"
    if fmt == "conll":
        src.write_text("Turku O\n\n" + "".join(f"{w} O\n" for w in long) + "\nis O\n", encoding="utf-8")
    elif fmt == "jsonl":
        src.write_text("\n".join(json.dumps({"tokens": t}) for t in (["Turku"], long, ["is"])) + "\n", encoding="utf-8")
    elif fmt == "txt":
        src.write_text("Turku\n" + " ".join(long) + "\nis\n", encoding="utf-8")
    else:
        pq.write_table(pa.table({"tokens": [["Turku"], long, ["is"]]}), src)
    where = 3 if fmt == "conll" else 2
    out = tmp_path / "out.jsonl"
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-sentence-tokens", "200")
    assert code == 2, output
    assert f"{src}:{where + 200 if fmt == 'conll' else where}: a sentence of more than 200" in output
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-sentence-tokens", "200", "--on-error", "skip")
    assert code == 3, output
    assert [json.loads(x)["tokens"] for x in out.read_text(encoding="utf-8").splitlines()] == [["Turku"], ["is"]]
    (reject,) = [json.loads(x) for x in Path(f"{out}.rejects.jsonl").read_text(encoding="utf-8").splitlines()]
    assert reject["line"] == where and "(--max-sentence-tokens)" in reject["error"]
    assert run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q", "--max-sentence-tokens", "300")[0] == 0


def test_sentence_bound_applies_to_train_and_evaluate(tiny_model, tmp_path):
    src = tmp_path / "train.conll"
    src.write_text("Turku B-LOC B-LOC\n\n" + "".join(f"w{i} O O\n" for i in range(50)), encoding="utf-8")
    code, output = run("evaluate", str(src), "--max-sentence-tokens", "20", "--bootstrap", "0")
    assert code == 2 and f"{src}:23: a sentence of more than 20 lines" in output, output
    code, output = run("train", "--train", str(src), "-o", str(tmp_path / "m"), "--base-model", tiny_model, "-q", "--max-sentence-tokens", "20")
    assert code == 2 and f"{src}:23: a sentence of more than 20 lines" in output, output


def test_a_long_run_of_blank_lines_is_never_held_whole(tiny_model, tmp_path):
    """20,000 blank lines between two sentences go out as they came, but the reader hands them on
    in runs of at most PASSTHROUGH_RUN lines (a bomb of blank lines held whole took 4 GB per 200 MB)."""
    src = tmp_path / "gaps.conll"
    src.write_text("Turku O\n" + "\n" * 20_000 + "-DOCSTART- O\n" + "\n" * 3000 + "is O\n", encoding="utf-8")
    assert max(len(s.prefix) for s in read(str(src))) <= PASSTHROUGH_RUN
    out = tmp_path / "out.conll"
    code, output = run("tag", str(src), "-o", str(out), "--model", tiny_model, "-q")
    assert code == 0, output
    lines = out.read_text(encoding="utf-8").split("\n")
    assert len(lines) == 23_004 and lines[0].startswith("Turku O ") and lines[20_001] == "-DOCSTART- O O"
    assert lines[23_002].startswith("is O ") and set(lines[1:20_001]) == {""}


# -- item 16: wide Parquet rows, checkpoints inside a block ------------------------------------------

def _wide_parquet(path: Path, rows: int, width: int, group: int | None = None) -> None:
    blob = [f"{i:06d}" + "x" * width for i in range(rows)]
    tokens = [["Turku", "is", "in", "Finland"][: 1 + i % 4] for i in range(rows)]
    pq.write_table(pa.table({"tokens": tokens, "blob": blob}), path, row_group_size=group)


def test_wide_rows_are_read_in_small_batches(tmp_path):
    """1,200 rows of 1 MB were read 1,024 rows (1 GB of Python objects) at a time."""
    from nerbatch.io.parquet import BATCH_BYTES, batch_rows

    _wide_parquet(tmp_path / "wide.parquet", 40, 1 << 20, group=20)
    _wide_parquet(tmp_path / "narrow.parquet", 40, 10)
    assert 0.9 < batch_rows(pq.ParquetFile(tmp_path / "wide.parquet"), 1024) / (BATCH_BYTES >> 20) <= 1
    assert batch_rows(pq.ParquetFile(tmp_path / "narrow.parquet"), 1024) == 1024
    assert [len(s.source["blob"]) for s in read(str(tmp_path / "wide.parquet"))] == [6 + (1 << 20)] * 40


def test_blocks_are_bounded_in_bytes_with_the_same_output(tiny_model, tmp_path):
    """Blocks of 2,048 one-MB rows held 2 GB (and the next block is prepared meanwhile): a block also
    stops at ``block_bytes``. The output is the same byte for byte."""
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    src = tmp_path / "wide.parquet"
    _wide_parquet(src, 60, 100_000, group=16)
    tagger = Tagger(tiny_model, TaggerOptions(precision="fp32", compile=False, block_bytes=1 << 20))
    cores = [len(core) for _, core, _, _, _ in tagger.blocks(read(str(src)))]
    assert sum(cores) == 60 and max(cores) <= 11  # about 1 MB each (was one block of 60)
    outputs = {}
    for name, block_bytes in (("small", 1 << 20), ("default", None)):
        out = tmp_path / f"{name}.parquet"
        options = TaggerOptions(precision="fp32", compile=False)
        if block_bytes:
            options = TaggerOptions(precision="fp32", compile=False, block_bytes=block_bytes)
        nerbatch.tag_files([str(src)], str(out), tagger=Tagger(tiny_model, options))
        outputs[name] = out.read_bytes()
    assert outputs["small"] == outputs["default"]


def _sentences_file(path: Path, n: int) -> None:
    words = ["Turku", "is", "the", "oldest", "city", "in", "Finland"]
    path.write_text("".join(" ".join(words[: 2 + i % 6]).replace(" ", " O\n") + " O\n\n" for i in range(n)), encoding="utf-8")


def test_checkpoints_come_inside_a_block_and_resume_byte_identical(tiny_model, tmp_path):
    """--checkpoint-every 500 on a 1,400-sentence file (one block of 2,048): the checkpoints came
    only when the whole block was tagged, so a run killed late restarted at 0. Blocks are now no
    larger than the interval: a run stopped while reading sentence 1,300 resumes from 1,000."""
    from nerbatch.errors import Interrupted
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    class StoppedWhileReading(Tagger):
        def tag_sentences(self, sentences, skip=0, **kw):
            def until_1300():
                for i, sent in enumerate(sentences):
                    if i == 1300:
                        raise KeyboardInterrupt
                    yield sent

            return super().tag_sentences(until_1300(), skip, **kw)

    src = tmp_path / "in.conll"
    _sentences_file(src, 1400)
    options = TaggerOptions(precision="fp32", compile=False)
    ref = tmp_path / "ref.conll"
    nerbatch.tag_files([str(src)], str(ref), tagger=Tagger(tiny_model, options))
    out = tmp_path / "out.conll"
    with pytest.raises(Interrupted) as info:
        nerbatch.tag_files([str(src)], str(out), tagger=StoppedWhileReading(tiny_model, options), resume=True, checkpoint_every=500)
    assert info.value.kept is not None and info.value.kept[1] == 1000
    summary = nerbatch.tag_files([str(src)], str(out), tagger=Tagger(tiny_model, options), resume=True, checkpoint_every=500).summary
    assert summary.per_file[0]["status"] == "resumed after 1000 records" and summary.tagged < 410
    assert out.read_bytes() == ref.read_bytes()
