"""--runtime onnx: the fp32 ONNX Runtime copy (nerbatch.tagging.onnx_fp32) tags as torch does, is fused,
cached, and a run that finds it starts without torch, transformers or onnx."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from nerbatch.errors import ModelError
from nerbatch.io import read
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE

pytest.importorskip("onnxruntime", reason="--runtime onnx needs the 'int8' extra (onnxruntime)")


def sentences(long_words: int = 300):
    sents = list(read(str(SAMPLE / "test.conll")))
    first = sents[0]  # one sentence far longer than the tiny model's 64-subword window
    sents[0] = type(first)(tokens=(first.tokens * (long_words // len(first.tokens) + 1))[:long_words], path=first.path, line=first.line)
    return sents


def tag(model: str, **options):
    t = Tagger(model, TaggerOptions(device="cpu", precision="fp32", **options))
    return t, list(t.tag_sentences(sentences()))


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_onnx_copy_tags_like_torch_is_fused_and_cached(tiny_model, cache):
    torch_tagger, ref = tag(tiny_model, compile=False)
    first_tagger, first = tag(tiny_model, runtime="onnx")
    assert first_tagger.backend.kind == "onnx"
    entries = [p for p in cache.iterdir() if p.name.startswith("onnx-")]
    assert len(entries) == 1 and (entries[0] / "model.fp32.onnx").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary folder left
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["graph"].startswith("fused:") and "Attention" in meta["graph"]  # ONNX Runtime's BERT fusions applied
    _, second = tag(tiny_model, runtime="onnx")  # from the entry
    for a, b, c in zip(ref, first, second, strict=True):
        assert len(b.pred) == len(b.tokens)
        assert a.pred == b.pred == c.pred
        assert b.scores == c.scores
        assert max((abs(x - y) for x, y in zip(a.scores, b.scores)), default=0) < 1e-3


def test_onnx_copy_of_a_casing_model_takes_its_type_ids(tiny_model, cache, tmp_path):
    """A model trained with casing ids (token types) is exported with them and tags as torch does."""
    import shutil

    from nerbatch.model.casing import SHAPES

    folder = tmp_path / "cased"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["type_vocab_size"] = SHAPES
    (folder / "config.json").write_text(json.dumps(config))
    import torch
    from transformers import AutoModelForTokenClassification

    torch.manual_seed(1)
    net = AutoModelForTokenClassification.from_pretrained(str(folder), ignore_mismatched_sizes=True)
    net.save_pretrained(str(folder))
    (folder / "nerbatch.json").write_text(json.dumps({"casing": "shape"}))
    _, ref = tag(str(folder), compile=False)
    onnx_tagger, got = tag(str(folder), runtime="onnx")
    assert onnx_tagger.backend.kind == "onnx"
    assert [s.pred for s in got] == [s.pred for s in ref]


@pytest.mark.parametrize("options, message", [
    ({"precision": "bf16", "runtime": "onnx"}, "fp32 or int8"),
    ({"precision": "fp32", "runtime": "onnx", "compile": True}, "--compile"),
    ({"precision": "fp32", "runtime": "onnx", "device": "cuda"}, "CPU only"),
])
def test_what_onnx_runtime_does_not_run_is_refused(tiny_model, cache, options, message):
    options = {"device": "cpu", **options}
    tagger = Tagger(tiny_model, TaggerOptions(**options))
    with pytest.raises(ModelError, match=message):
        tagger.load()


def test_auto_precision_with_onnx_never_picks_bf16(tiny_model, monkeypatch):
    """--runtime onnx with --precision auto chooses among fp32 and int8 only, whatever bf16 measures."""
    monkeypatch.setenv("NERBATCH_PRECISION_RATES", '{"fp32": 1, "bf16": 5}')
    assert Tagger(tiny_model, TaggerOptions(device="cpu", compile=False)).options.precision == "bf16"
    assert Tagger(tiny_model, TaggerOptions(device="cpu", runtime="onnx")).options.precision == "fp32"


def test_cli_second_run_starts_with_onnxruntime_alone_and_workers_give_the_same_bytes(tiny_model, tmp_path):
    """The CLI: the first run exports the copy; the next, one process or `--workers 2`, imports neither
    torch, transformers nor onnx (what exporting needs), says so in --log-json, and writes the same bytes."""
    env = {**os.environ, "NERBATCH_CACHE_DIR": str(tmp_path / "cache")}
    src = SAMPLE / "test.conll"
    probe = (
        "import sys, atexit\n"
        "atexit.register(lambda: sys.stderr.write('HEAVY ' + ' '.join(m for m in ('torch', 'transformers', 'onnx') if m in sys.modules) + '\\n'))\n"
        "from nerbatch.cli import main; sys.argv[0] = 'nerbatch'; main()\n"
    )

    def run(out, *extra):
        args = [sys.executable, "-c", probe, "tag", str(src), "-o", str(out), "-m", tiny_model, "--runtime", "onnx",
                "--precision", "fp32", "--log-json", str(tmp_path / "log.jsonl"), "-q", *extra]
        res = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stderr
        heavy = [line for line in res.stderr.splitlines() if line.startswith("HEAVY")]
        log = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
        return heavy[-1].split()[1:], log["backend"]

    heavy, backend = run(tmp_path / "first.conll")
    assert "torch" in heavy and backend == "onnx"  # the first run exports through torch
    assert run(tmp_path / "second.conll") == ([], "onnx")
    assert run(tmp_path / "workers.conll", "--workers", "2") == ([], "onnx")
    first = (tmp_path / "first.conll").read_bytes()
    assert first and first == (tmp_path / "second.conll").read_bytes() == (tmp_path / "workers.conll").read_bytes()


def test_without_a_cache_the_copy_is_built_in_a_temporary_folder(tiny_model):
    """No cache folder (a hub id, or an unwritable cache): the fp32 copy is built under its package name in
    a temporary folder, and ONNX Runtime opens it."""
    from transformers import AutoModelForTokenClassification

    from nerbatch.model.cache import PACKAGE_FILES
    from nerbatch.tagging.int8 import open_session
    from nerbatch.tagging.onnx_fp32 import onnx_fp32

    model = AutoModelForTokenClassification.from_pretrained(tiny_model)
    path = onnx_fp32(model, None, None, None, None, 64)
    try:
        assert os.path.basename(path) == PACKAGE_FILES["onnx"] and os.path.getsize(path) > 0
        assert {i.name for i in open_session(path, 1).get_inputs()} >= {"input_ids", "attention_mask"}
    finally:
        import shutil

        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
