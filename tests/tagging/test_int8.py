"""--precision int8: the ONNX Runtime int8 copy of a model tags like the fp32 one (tiny random model)."""

from __future__ import annotations

import pytest

from nerbatch.io import read
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE

pytest.importorskip("onnxruntime", reason="int8 needs the 'int8' extra (onnxruntime)")


def test_int8_tags_every_token_and_mostly_agrees_with_fp32(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    fp32 = list(Tagger(tiny_model, TaggerOptions(device="cpu")).tag_sentences(read(str(SAMPLE / "test.conll"))))
    tagger = Tagger(tiny_model, TaggerOptions(device="cpu", precision="int8"))
    int8 = list(tagger.tag_sentences(read(str(SAMPLE / "test.conll"))))
    assert [len(s.pred) for s in int8] == [len(s.tokens) for s in int8]
    a = [t for s in fp32 for t in s.pred]
    b = [t for s in int8 for t in s.pred]
    assert len(a) == len(b) and sum(x == y for x, y in zip(a, b)) / len(a) > 0.9
    assert any((tmp_path / "cache").iterdir())  # quantized once, cached for the next run
    again = Tagger(tiny_model, TaggerOptions(device="cpu", precision="int8"))
    assert [s.pred for s in again.tag_sentences(read(str(SAMPLE / "test.conll")))] == [s.pred for s in int8]


def test_int8_on_gpu_is_refused(tiny_model):
    from nerbatch.errors import ModelError

    tagger = Tagger(tiny_model, TaggerOptions(device="cuda", precision="int8"))
    with pytest.raises(ModelError):
        list(tagger.tag_sentences(read(str(SAMPLE / "test.conll"))))


def test_int8_second_run_starts_without_torch_or_transformers(tiny_model, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NERBATCH_CACHE_DIR": str(tmp_path / "cache")}
    code = (
        "import sys; from nerbatch.tagging.tagger import Tagger, TaggerOptions; from nerbatch.io import read\n"
        f"t = Tagger({tiny_model!r}, TaggerOptions(device='cpu', precision='int8'))\n"
        f"out = list(t.tag_sentences(read({str(SAMPLE / 'test.conll')!r})))\n"
        "assert all(len(s.pred) == len(s.tokens) for s in out)\n"
        "print(any(m in sys.modules for m in ('transformers', 'torch', 'onnx')), ' '.join(p for s in out for p in s.pred))"
    )
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr + runs[1].stderr
    first, second = (r.stdout.split(" ", 1) for r in runs)
    assert first[0] == "True" and second[0] == "False"  # the first run quantizes through transformers; the second imports neither it, torch nor onnx
    assert first[1] == second[1]  # same tags
    assert [p.name[:5] for p in (tmp_path / "cache").iterdir() if p.name.startswith("int8-")] == ["int8-"]
