"""The compiled CPU model (nerbatch.tagging.compiled), continued: the builds that start from an empty
cache of their own (bf16; auto compile in the background). Split from test_compiled.py, whose tests
start from that module's one fp32 build, so that the two halves can run on two test workers."""

from __future__ import annotations

import pytest

from nerbatch.tagging.compiled import compiler_available
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from .test_compiled import sentences, tag

pytestmark = pytest.mark.skipif(not compiler_available(), reason="no C++ compiler (g++/c++/clang++): the compiled path cannot build")


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NERBATCH_COMPILE", raising=False)
    return tmp_path / "cache"


def test_bf16_compiled_keeps_every_word(tiny_model, cache):
    t, out = tag(tiny_model, compile=True, precision="bf16")
    assert t.compiled
    src = sentences(long_words=300)
    assert [s.tokens for s in out] == [s.tokens for s in src]
    assert all(len(s.pred) == len(s.tokens) == len(s.scores) for s in out)
    assert all(p in t.labels for s in out for p in s.pred)


def test_a_first_run_does_not_wait_for_a_slow_build(tiny_model, cache, monkeypatch):
    """Auto compile: the build runs in another process (here slowed by a test hook); tagging starts
    at once with the eager model, and a second tagger joins the running build instead of starting one."""
    import time

    monkeypatch.setenv("NERBATCH_TEST_BUILD_DELAY", "120")
    t0 = time.monotonic()
    first, out = tag(tiny_model)
    assert time.monotonic() - t0 < 100 and not first.compiled
    assert all(len(s.pred) == len(s.tokens) for s in out)
    pending = first.backend.pending
    try:
        assert pending is not None and pending.process is not None and pending.running()
        second = Tagger(tiny_model, TaggerOptions(device="cpu"))
        second.load()
        assert second.backend.pending is not None and second.backend.pending.process is None  # joined, not a new build
        assert second.backend.pending.running()
    finally:
        pending.process.kill()
        pending.process.wait()
    assert not pending.running() and pending.ready() is None


def test_the_background_build_is_swapped_in_when_ready(tiny_model, cache, monkeypatch):
    # normal priority: beside other busy test workers a nice-19 build may not get the CPU for minutes
    monkeypatch.setenv("NERBATCH_BUILD_NICE", "0")
    eager, ref = tag(tiny_model, compile=False)
    t = Tagger(tiny_model, TaggerOptions(device="cpu"))
    t.load()
    assert t.backend.kind == "eager"
    entry = t.backend.pending.wait(timeout=600)
    assert entry is not None, "the background build failed"
    out = list(t.tag_sentences(sentences(long_words=300)))
    assert t.compiled  # swapped in at the first block after the entry appeared
    assert [s.pred for s in out] == [s.pred for s in ref]
