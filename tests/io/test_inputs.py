"""The inputs people have: compressed files (in and out, resumable), folders and globs, Hugging Face datasets."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.io import read

from ..conftest import SAMPLE

zstandard = pytest.importorskip("zstandard")

COMPRESS = {
    "gz": gzip.compress,
    "bz2": bz2.compress,
    "xz": lzma.compress,
    "zst": lambda data: zstandard.ZstdCompressor().compress(data),
}


def decompress(path: Path) -> bytes:
    """The whole decompressed content (every member / stream / frame)."""
    ext = path.suffix
    if ext == ".gz":
        return gzip.decompress(path.read_bytes())
    if ext == ".bz2":
        return bz2.decompress(path.read_bytes())
    if ext == ".xz":
        return lzma.decompress(path.read_bytes())
    with open(path, "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True).read()


def tag(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["tag", *args, "-q"])
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def visible(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if not p.name.startswith("."))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plain")
    (folder / "a.conll").write_bytes((SAMPLE / "test.conll").read_bytes() * 3)
    (folder / "b.jsonl").write_bytes((SAMPLE / "test.jsonl").read_bytes() * 3)
    return folder


@pytest.fixture(scope="module")
def plain_outputs(corpus, tiny_model, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("plain-out")
    got = {}
    for name, target in (("a.conll", "a.out.conll"), ("a.conll", "a.out.jsonl"), ("b.jsonl", "b.out.jsonl")):
        code, output = tag(str(corpus / name), "-o", str(out / target), "--model", tiny_model)
        assert code == 0, output
        got[target] = (out / target).read_bytes()
    return got


# -- compressed files ------------------------------------------------------------------------

@pytest.mark.parametrize("ext", sorted(COMPRESS))
def test_each_compression_in_and_out_equals_the_uncompressed_run(ext, corpus, plain_outputs, tiny_model, tmp_path):
    for name in ("a.conll", "b.jsonl"):
        (tmp_path / f"{name}.{ext}").write_bytes(COMPRESS[ext]((corpus / name).read_bytes()))
    cases = [("a.conll", "a.out.conll"), ("a.conll", "a.out.jsonl"), ("b.jsonl", "b.out.jsonl")]
    for name, target in cases:
        out = tmp_path / f"{target}.{ext}"
        code, output = tag(str(tmp_path / f"{name}.{ext}"), "-o", str(out), "--model", tiny_model, "--checkpoint-every", "40")
        assert code == 0, output
        assert decompress(out) == plain_outputs[target], (name, target)
    # compressed in, plain out; plain in, compressed out
    code, _ = tag(str(tmp_path / f"a.conll.{ext}"), "-o", str(tmp_path / "plain.conll"), "--model", tiny_model)
    assert code == 0 and (tmp_path / "plain.conll").read_bytes() == plain_outputs["a.out.conll"]
    code, _ = tag(str(corpus / "b.jsonl"), "-o", str(tmp_path / f"z.jsonl.{ext}"), "--model", tiny_model)
    assert code == 0 and decompress(tmp_path / f"z.jsonl.{ext}") == plain_outputs["b.out.jsonl"]
    # the readers stream the decompressed text, with its line numbers
    assert [s.line for s in read(str(tmp_path / f"a.conll.{ext}"))] == [s.line for s in read(str(corpus / "a.conll"))]


def test_command_line_tools_read_the_outputs(corpus, plain_outputs, tiny_model, tmp_path):
    """A multi-member gzip file (one member per checkpoint) is one valid file for gzip itself."""
    import shutil

    if not shutil.which("gzip"):
        pytest.skip("no gzip binary")
    out = tmp_path / "a.out.conll.gz"
    code, output = tag(str(corpus / "a.conll"), "-o", str(out), "--model", tiny_model, "--checkpoint-every", "25")
    assert code == 0, output
    assert out.read_bytes().count(b"\x1f\x8b\x08") > 2  # several members
    assert subprocess.run(["gzip", "-dc", str(out)], capture_output=True, check=True).stdout == plain_outputs["a.out.conll"]


def test_empty_input_gives_a_valid_empty_compressed_output(tiny_model, tmp_path):
    (tmp_path / "e.conll.gz").write_bytes(gzip.compress(b""))
    code, output = tag(str(tmp_path / "e.conll.gz"), "-o", str(tmp_path / "e.out.conll.gz"), "--model", tiny_model)
    assert code == 0, output
    assert gzip.decompress((tmp_path / "e.out.conll.gz").read_bytes()) == b""


def test_format_comes_from_the_suffix_under_the_compression(tmp_path):
    from nerbatch.io import guess_format

    assert guess_format("a.conll.gz") == "conll"
    assert guess_format("x.jsonl.zst") == "jsonl"
    assert guess_format("eng.train.bz2") == "conll"
    assert guess_format("notes.txt.xz") == "text"


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_corrupt_gzip_is_one_line_with_file_and_decompressed_line(damage, tiny_model, tmp_path):
    data = (SAMPLE / "test.conll").read_bytes() * 10
    packed = bytearray(gzip.compress(data))
    if damage == "corrupt":
        at = len(packed) * 3 // 4
        packed[at : at + 8] = b"\xff" * 8
    else:
        del packed[len(packed) * 3 // 4 :]
    bad = tmp_path / "bad.conll.gz"
    bad.write_bytes(bytes(packed))
    out = tmp_path / "out" / "bad.conll.gz"
    out.parent.mkdir()
    code, output = tag(str(bad), "-o", str(out), "--model", tiny_model, "--checkpoint-every", "10")
    assert code == 2
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert f"{bad}:" in lines[0] and "corrupt gzip data at decompressed line" in lines[0]
    reached = int(lines[0].split(f"{bad}:")[1].split(":")[0])
    assert 1 < reached <= data.count(b"\n") + 1  # a line of the decompressed text, well inside it
    assert os.listdir(out.parent) == []  # no output, no partial file, no manifest


def _manifest(path: Path) -> dict:
    try:
        return json.loads((path.parent / f".{path.name}.nerbatch.json").read_text())
    except (OSError, ValueError):
        return {}


def test_killed_run_on_a_gz_output_resumes_byte_identical(tiny_model, tmp_path):
    src = tmp_path / "big.conll.gz"
    src.write_bytes(gzip.compress((SAMPLE / "test.conll").read_bytes() * 20))
    ref = tmp_path / "ref" / "big.out.conll.gz"
    ref.parent.mkdir()
    base = ["--model", tiny_model, "-q", "--checkpoint-every", "97", "--batch-tokens", "512"]
    code, output = tag(str(src), "-o", str(ref), *base)
    assert code == 0, output
    out = tmp_path / "run" / "big.out.conll.gz"
    out.parent.mkdir()
    args = [sys.executable, "-m", "nerbatch", "tag", str(src), "-o", str(out), *base]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if _manifest(out).get("checkpoint", {}).get("sentences", 0) >= 97 * 3:
            proc.send_signal(signal.SIGKILL)
            killed = True
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed, "the run ended before the kill point"
    assert not out.exists()
    part = out.parent / f".{out.name}.nerbatch.part"
    assert part.exists()
    ck = _manifest(out)
    log = tmp_path / "log.jsonl"
    resumed = subprocess.run(args + ["--resume", "--log-json", str(log)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(log.read_text().splitlines()[0])["status"].startswith("resumed after "), (log.read_text(), ck)
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(ref.read_bytes())
    assert out.read_bytes() == ref.read_bytes()  # one member per checkpoint, no name or time in headers
    assert not part.exists()


# -- folders and globs -----------------------------------------------------------------------

@pytest.fixture()
def tree(tmp_path) -> Path:
    root = tmp_path / "corpus"
    (root / "en" / "news").mkdir(parents=True)
    (root / ".hidden").mkdir()
    conll = (SAMPLE / "dev.conll").read_bytes()
    (root / "top.conll").write_bytes(conll)
    (root / "en" / "a.conll").write_bytes(conll)
    (root / "en" / "news" / "b.conll.gz").write_bytes(gzip.compress(conll))
    (root / "en" / "news" / "c.jsonl").write_bytes((SAMPLE / "test.jsonl").read_bytes())
    (root / "en" / "notes.md").write_text("not an input\n")
    (root / ".hidden" / "h.conll").write_bytes(conll)
    return root


def test_nested_folder_is_walked_and_mirrored(tree, tiny_model, tmp_path):
    out = tmp_path / "out"
    code, output = tag(str(tree), "-o", str(out), "--model", tiny_model)
    assert code == 0, output
    assert visible(out) == ["en", "en/a.conll", "en/news", "en/news/b.conll.gz", "en/news/c.jsonl", "top.conll"]
    assert gzip.decompress((out / "en/news/b.conll.gz").read_bytes()) == (out / "en/a.conll").read_bytes()
    assert (out / "top.conll").read_bytes() == (out / "en/a.conll").read_bytes()


def test_glob_picks_files_by_name_or_relative_path(tree, tiny_model, tmp_path):
    code, output = tag(str(tree), "-o", str(tmp_path / "o1"), "--model", tiny_model, "--glob", "*.conll*", "--output-format", "jsonl")
    assert code == 0, output
    assert visible(tmp_path / "o1") == ["en", "en/a.jsonl", "en/news", "en/news/b.jsonl.gz", "top.jsonl"]
    code, output = tag(str(tree), "-o", str(tmp_path / "o2"), "--model", tiny_model, "--glob", "en/news/*")
    assert code == 0, output
    assert visible(tmp_path / "o2") == ["en", "en/news", "en/news/b.conll.gz", "en/news/c.jsonl"]
    code, output = tag(str(tree), "-o", str(tmp_path / "o3"), "--model", tiny_model, "--glob", "*.nothing")
    assert code == 2 and "no input files in this folder match --glob *.nothing" in output
    assert not (tmp_path / "o3").exists()


def test_name_collision_is_refused_before_any_write(tree, tiny_model, tmp_path):
    (tree / "en" / "a.jsonl").write_bytes((SAMPLE / "test.jsonl").read_bytes())
    out = tmp_path / "out"
    code, output = tag(str(tree), "-o", str(out), "--model", tiny_model, "--output-format", "jsonl")
    assert code == 2
    line = output.strip()
    assert len(line.splitlines()) == 1
    assert str(tree / "en" / "a.conll") in line and str(tree / "en" / "a.jsonl") in line
    assert str(out / "en" / "a.jsonl") in line
    assert not out.exists()  # not even the output folder


def test_a_folder_input_needs_an_output_folder(tree, tiny_model):
    code, output = tag(str(tree), "--model", tiny_model)
    assert code == 2 and "a folder input needs -o FOLDER" in output


# -- Hugging Face datasets -------------------------------------------------------------------

NAMES = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]  # conll2003's order


def _rows(path: Path, every: int = 1) -> list[dict]:
    rows = []
    for i, sent in enumerate(s for s in read(str(path)) if s.tokens):
        if i % every == 0:
            rows.append({"id": str(len(rows)), "doc_id": "0", "tokens": sent.tokens,
                         "ner_tags": [NAMES.index(t) for t in sent.tags], "pos": ["X"] * len(sent.tokens)})
    return rows


def _conll(rows: list[dict], path: Path) -> None:
    """The same sentences as CoNLL: one document (no -DOCSTART-), like the rows' one doc_id."""
    path.write_text("".join("".join(f"{w} {NAMES[t]}\n" for w, t in zip(r["tokens"], r["ner_tags"])) + "\n" for r in rows))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    datasets = pytest.importorskip("datasets")
    from datasets import ClassLabel, Features, List, Value

    folder = tmp_path_factory.mktemp("hf")
    features = Features({
        "id": Value("string"), "doc_id": Value("string"), "tokens": List(Value("string")),
        "ner_tags": List(ClassLabel(names=NAMES)), "pos": List(Value("string")),
    })
    splits = {"train": _rows(SAMPLE / "train.conll", every=2), "validation": _rows(SAMPLE / "dev.conll"),
              "test": _rows(SAMPLE / "test.conll")}
    dd = datasets.DatasetDict({k: datasets.Dataset.from_list(v, features=features) for k, v in splits.items()})
    dd.save_to_disk(str(folder / "ds"))
    dd["test"].save_to_disk(str(folder / "test_only"))
    for name, rows in splits.items():
        _conll(rows, folder / f"{name}.conll")
    return {"root": folder, "ds": str(folder / "ds"), "test_only": str(folder / "test_only"), "features": features}


def test_classlabel_ids_are_read_as_tag_names(dataset):
    from nerbatch.io import ReadOptions

    got = [(s.tokens, s.tags) for s in read(dataset["ds"], options=ReadOptions(split="validation"))]
    want = [(s.tokens, s.tags) for s in read(str(dataset["root"] / "validation.conll")) if s.tokens]
    assert got == want
    assert [s.tags for s in read(dataset["ds"] + "@validation")] == [t for _, t in want]


def test_a_dataset_with_several_splits_needs_split(dataset, tiny_model, tmp_path):
    code, output = tag(dataset["ds"], "-o", str(tmp_path / "x.jsonl"), "--model", tiny_model)
    assert code == 2 and "splits train, validation, test" in output and "--split" in output
    code, output = tag(dataset["ds"], "--split", "nope", "-o", str(tmp_path / "x.jsonl"), "--model", tiny_model)
    assert code == 2 and "no split 'nope'" in output


def test_tagged_dataset_outputs_keep_every_column(dataset, tiny_model, tmp_path):
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    ref = tmp_path / "ref.jsonl"
    assert tag(str(dataset["root"] / "test.conll"), "-o", str(ref), "--model", tiny_model, "--output-format", "jsonl")[0] == 0
    want = [json.loads(line)["pred_tags"] for line in ref.read_text().splitlines()]
    assert tag(dataset["ds"], "--split", "test", "-o", str(tmp_path / "t.jsonl"), "--model", tiny_model)[0] == 0
    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["pred_tags"] for r in records] == want  # the same tags as the CoNLL copy (same document)
    assert set(records[0]) >= {"id", "doc_id", "tokens", "ner_tags", "pos", "tags", "pred_tags", "entities"}
    assert all(isinstance(i, int) for i in records[0]["ner_tags"])  # the input column as it was
    assert tag(dataset["ds"] + "@test", "-o", str(tmp_path / "t.parquet"), "--model", tiny_model)[0] == 0
    table = pq.read_table(tmp_path / "t.parquet")
    assert table.column_names == ["id", "doc_id", "tokens", "ner_tags", "pos", "tags", "pred_tags", "pred_scores"]
    assert table.column("pred_tags").to_pylist() == want
    code, output = tag(dataset["test_only"], "-o", str(tmp_path / "tagged"), "--output-format", "hf", "--model", tiny_model)
    assert code == 0, output
    out = load_from_disk(str(tmp_path / "tagged"))
    assert out.features["ner_tags"] == dataset["features"]["ner_tags"]  # the ClassLabel names kept
    assert out["pred_tags"] == want and out["id"] == [r["id"] for r in records]
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tagged.") and not n.endswith(".json")]
    # every output reads back for evaluate, with the same scores
    scores = []
    for target in ("t.jsonl", "t.parquet", "tagged"):
        res = CliRunner().invoke(cli, ["evaluate", str(tmp_path / target), "--bootstrap", "0"])
        assert res.exit_code == 0, res.output
        scores.append(res.output.splitlines()[:2])
    assert scores[0] == scores[1] == scores[2]


def test_dataset_trains_and_evaluates_like_the_same_data_as_conll(dataset, tiny_encoder, tmp_path):
    common = ["--base-model", tiny_encoder, "--epochs", "1", "--lr", "5e-3", "--max-length", "64", "-q"]
    runs = {}
    for name, train_in, dev_in in (
        ("hf", dataset["ds"] + "@train", dataset["ds"] + "@validation"),
        ("conll", str(dataset["root"] / "train.conll"), str(dataset["root"] / "validation.conll")),
    ):
        out = tmp_path / name
        res = CliRunner().invoke(cli, ["train", "--train", train_in, "--dev", dev_in, "-o", str(out), *common])
        assert res.exit_code == 0, res.output
        runs[name] = out
    config = {k: json.loads((runs[k] / "config.json").read_text()) for k in runs}
    assert config["hf"]["id2label"] == config["conll"]["id2label"]  # same labels
    # same features, batches and steps: the same weights, bit for bit on the CPU
    assert (runs["hf"] / "model.safetensors").read_bytes() == (runs["conll"] / "model.safetensors").read_bytes()
    metrics = {k: json.loads((runs[k] / "metrics.json").read_text()) for k in runs}
    assert [e["f1"] for e in metrics["hf"]["epochs"]] == [e["f1"] for e in metrics["conll"]["epochs"]]
    reports = []
    for target in (dataset["ds"] + "@test", str(dataset["root"] / "test.conll")):
        res = CliRunner().invoke(cli, ["evaluate", "--model", str(runs["hf"]), target, "--bootstrap", "0", "--device", "cpu"])
        assert res.exit_code == 0, res.output
        reports.append(res.output.splitlines()[:2])
    assert reports[0] == reports[1]
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(runs["hf"]), dataset["ds"], "--split", "test", "--bootstrap", "0", "--device", "cpu"])
    assert res.exit_code == 0 and res.output.splitlines()[:2] == reports[0]


def test_help_imports_neither_datasets_nor_zstandard():
    code = "import sys; from nerbatch.cli import main; sys.argv=['nerbatch','--help']\ntry: main()\nexcept SystemExit: pass\n" \
        "print(sorted(m for m in ('datasets', 'zstandard', 'torch', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
