"""The compiled CPU model (AOTInductor package, nerbatch.tagging.compiled): built once, cached, same tags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from nerbatch.io import read
from nerbatch.tagging.compiled import compiler_available
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE

pytestmark = pytest.mark.skipif(not compiler_available(), reason="no C++ compiler (g++/c++/clang++): the compiled path cannot build")


def sentences(n: int | None = None, long_words: int = 0):
    sents = list(read(str(SAMPLE / "test.conll")))[:n]
    if long_words:  # one sentence much longer than the tiny model's 64-subword window
        first = sents[0]
        sents[0] = type(first)(tokens=(first.tokens * (long_words // len(first.tokens) + 1))[:long_words], path=first.path, line=first.line)
    return sents


def tag(model: str, **options):
    t = Tagger(model, TaggerOptions(device="cpu", **options))
    out = list(t.tag_sentences(sentences(long_words=300)))
    return t, out


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NERBATCH_COMPILE", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def first_build(tiny_model, tmp_path_factory):
    """The tiny model tagged eagerly, then compiled (fp32) into an empty cache folder, once for the
    module: what test_compiled_fp32_tags_like_eager_and_is_cached checks, and the entry that the
    tests starting from a cached entry copy (see ``built``). ``listing``: the cache folder right after
    the build."""
    folder = tmp_path_factory.mktemp("first-build") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NERBATCH_CACHE_DIR", str(folder))
        mp.delenv("NERBATCH_COMPILE", raising=False)
        eager, ref = tag(tiny_model, compile=False)
        made_by_eager = folder.exists()
        compiled, first = tag(tiny_model, compile=True)
        listing = sorted(folder.iterdir())
    return SimpleNamespace(cache=folder, eager=eager, ref=ref, made_by_eager=made_by_eager, compiled=compiled, first=first,
                           listing=listing)


@pytest.fixture(scope="module")
def built(first_build):
    """The tiny model's fp32 package (the one first_build made), for the tests that start from a cached
    entry (entries are keyed by the folder's contents, so a copy of one serves any copy of the model)."""
    import shutil

    assert first_build.compiled.compiled
    entries = [p for p in first_build.listing if p.name.startswith("aoti-")]
    assert len(entries) == 1

    def warm(cache: Path) -> Path:
        cache.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copytree(entries[0], cache / entries[0].name))

    return warm


def test_compiled_fp32_tags_like_eager_and_is_cached(tiny_model, first_build, monkeypatch):
    eager, ref, cache = first_build.eager, first_build.ref, first_build.cache
    assert not eager.compiled and not first_build.made_by_eager
    built, first = first_build.compiled, first_build.first
    assert built.compiled
    entries = [p for p in first_build.listing if p.name.startswith("aoti-")]
    assert len(entries) == 1 and (entries[0] / "model.pt2").is_file()
    assert not [p for p in first_build.listing if p.name.startswith(".")]  # no temporary folder left
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(cache))
    monkeypatch.delenv("NERBATCH_COMPILE", raising=False)
    loaded, second = tag(tiny_model)  # auto: the cached entry
    assert loaded.compiled
    for a, b, c in zip(ref, first, second, strict=True):
        assert len(a.pred) == len(a.tokens)
        assert a.pred == b.pred == c.pred  # fp32: the same tags as the eager model
        assert b.scores == c.scores
        assert max((abs(x - y) for x, y in zip(a.scores, b.scores)), default=0) < 1e-3
    meta = json.loads((entries[0] / "meta.json").read_text())
    assert meta["labels"] == eager.labels and meta["precision"] == "fp32"


def test_cached_start_does_not_import_transformers(tiny_model, cache, built, tmp_path):
    built(cache)
    code = (
        "import sys; from nerbatch.tagging.tagger import Tagger, TaggerOptions; from nerbatch.io import read\n"
        f"t = Tagger({tiny_model!r}, TaggerOptions(device='cpu'))\n"
        f"out = list(t.tag_sentences(read({str(SAMPLE / 'test.conll')!r})))\n"
        "assert t.compiled and all(len(s.pred) == len(s.tokens) for s in out)\n"
        "print('transformers' in sys.modules, len(out))"
    )
    env = {**os.environ, "NERBATCH_CACHE_DIR": str(cache)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    loaded, count = res.stdout.split()
    assert loaded == "False" and int(count) == len(sentences())


def test_workers_start_from_the_cached_package_without_transformers(tiny_model, cache, built, tmp_path):
    """`--workers 2` with a cached package: this process imports torch alone before forking the workers
    (not transformers: seconds of start-up), the workers run the package, and the output is the bytes of
    one compiled process."""
    built(cache)
    out, ref = tmp_path / "w.conll", tmp_path / "one.conll"
    code = (
        "import sys; from nerbatch.run.service import tag_files; from nerbatch.tagging.tagger import TaggerOptions\n"
        f"o = TaggerOptions(device='cpu', precision='fp32', block=8)\n"
        f"tag_files([{str(SAMPLE / 'test.conll')!r}], {str(out)!r}, model={tiny_model!r}, tagger_options=o, workers=2,\n"
        f"          log_json={str(tmp_path / 'log.jsonl')!r})\n"
        "print('transformers' in sys.modules)"
    )
    env = {**os.environ, "NERBATCH_CACHE_DIR": str(cache)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
    assert json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])["backend"] == "compiled"
    from nerbatch.run.service import tag_files

    tag_files([str(SAMPLE / "test.conll")], str(ref), model=tiny_model, tagger_options=TaggerOptions(device="cpu", precision="fp32", block=8))
    assert out.read_bytes() == ref.read_bytes() and out.stat().st_size > 0


def test_damaged_entry_is_rebuilt(tiny_model, cache, built):
    entry = built(cache)
    first, ref = tag(tiny_model, compile=True)
    assert first.compiled  # served from the entry
    (entry / "model.pt2").write_bytes(b"not a package")
    t, out = tag(tiny_model, compile=True, verbose=True)
    assert t.compiled
    assert [s.pred for s in out] == [s.pred for s in ref]
    assert (entry / "model.pt2").stat().st_size > 1000


def test_a_copy_with_a_changed_weight_and_old_mtimes_is_not_served_from_the_cache(tiny_model, cache, built, tmp_path):
    """cp -a model model_b; change a weight; touch -r: model_b's compiled run gives model_b's tags."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    a = tmp_path / "model_a"
    shutil.copytree(tiny_model, a)
    built(cache)  # A's entry in the cache (a copy of the tiny model's)
    assert tag(str(a), compile=True)[0].compiled
    b = tmp_path / "model_b"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    weights = b / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in state if k.startswith("classifier.bias"))
    state[name] = state[name] + torch.arange(state[name].numel(), dtype=state[name].dtype)  # a different model
    save_file(state, str(weights), metadata={"format": "pt"})
    subprocess.run(["touch", "-r", str(a / "model.safetensors"), str(weights)], check=True)
    assert weights.stat().st_size == (a / "model.safetensors").stat().st_size
    assert weights.stat().st_mtime_ns == (a / "model.safetensors").stat().st_mtime_ns
    _, eager_b = tag(str(b), compile=False)
    compiled_b, got = tag(str(b), compile=True)
    assert compiled_b.compiled
    assert [s.pred for s in got] == [s.pred for s in eager_b]
    _, eager_a = tag(str(a), compile=False)
    assert [s.pred for s in eager_a] != [s.pred for s in eager_b]  # the change matters
    assert len([p for p in cache.iterdir() if p.name.startswith("aoti-")]) == 2


def test_no_compiler_falls_back_to_eager(tiny_model, cache, monkeypatch, capfd):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    t, out = tag(tiny_model, compile=True, verbose=True)  # asked for, cannot build: a notice, then eager
    assert not t.compiled and all(len(s.pred) == len(s.tokens) for s in out)
    assert "running the model uncompiled: no C++ compiler" in capfd.readouterr().err
    t2 = Tagger(tiny_model, TaggerOptions(device="cpu"))  # auto: quietly uncompiled
    assert not t2.compile_wanted()


def test_cli_compile_flags(tiny_model, cache, tmp_path):
    from click.testing import CliRunner

    from nerbatch.cli import cli

    out = tmp_path / "out.conll"
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "-m", tiny_model, "--no-compile", "-q"])
    assert res.exit_code == 0, res.output
    assert not cache.exists()
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "-m", tiny_model, "--compile", "--precision", "int8"])
    assert res.exit_code == 2
    assert "--compile applies to a local model folder in fp32 or bf16 on the CPU" in res.output
    assert not Path(str(out) + ".rejects.jsonl").exists()
