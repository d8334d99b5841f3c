"""The Python API: what the commands do, as library calls, and the README's Python examples run as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nerbatch
from nerbatch.errors import InputError

from .conftest import ROOT, SAMPLE


def test_package_exports_load_lazily():
    code = "import sys, nerbatch; assert 'torch' not in sys.modules and 'nerbatch.run.service' not in sys.modules; print(nerbatch.tag_files.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "nerbatch.run.service"


def test_tag_files_writes_what_the_command_writes(tiny_model, tmp_path):
    from click.testing import CliRunner

    from nerbatch.cli import cli

    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(tmp_path / "cli.conll"), "--model", tiny_model,
                                   "--precision", "fp32", "--no-compile", "-q", "--report-json", str(tmp_path / "cli.json")])
    assert res.exit_code == 0, res.output
    result = nerbatch.tag_files([str(SAMPLE / "test.conll")], str(tmp_path / "api.conll"), model=tiny_model,
                                tagger_options=nerbatch.TaggerOptions(precision="fp32", compile=False), score=True)
    assert (tmp_path / "api.conll").read_bytes() == (tmp_path / "cli.conll").read_bytes()
    assert result.summary.sentences == 60 and result.summary.files == 1
    import json

    cli_scores = json.loads((tmp_path / "cli.json").read_text())
    assert result.report["overall"] == cli_scores["overall"]


def test_tag_files_refuses_a_report_over_its_input_before_writing(tiny_model, tmp_path):
    src = tmp_path / "in.conll"
    shutil.copy(SAMPLE / "test.conll", src)
    with pytest.raises(InputError, match="would overwrite the input"):
        nerbatch.tag_files([str(src)], str(tmp_path / "out.conll"), model=tiny_model, report=str(src))
    assert not (tmp_path / "out.conll").exists()


def test_tagger_in_memory_texts_and_tokens(tiny_model):
    tagger = nerbatch.Tagger.from_pretrained(tiny_model, precision="fp32", compile=False)
    [doc] = tagger.tag(["Turku is the oldest city in Finland. It was founded in 1229."])
    assert doc.words[:3] == ["Turku", "is", "the"] and doc.words[-1] == "."
    assert len(doc.tags) == len(doc.scores) == len(doc.words) == len(doc.spans)
    assert doc.sentences == [0, 8]
    for (a, b), word in zip(doc.spans, doc.words):
        assert doc.text[a:b] == word
    for ent in doc.entities:
        assert doc.text[ent.start:ent.end] == ent.text
        assert doc.tags[ent.first_word].endswith(ent.label)
    # the same words through the file path give the same tags
    [tokens] = tagger.tag_tokens([doc.words[:8]])
    assert tokens.words == doc.words[:8] and len(tokens.tags) == 8
    assert [r.words for r in tagger.tag_tokens([["a"], [], ["b", "c"]])] == [["a"], [], ["b", "c"]]


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_readme_python_examples_run(tiny_model, tmp_path, monkeypatch):
    """Each ```python block of the README, run in order in a folder holding `model/` (the tiny model)
    and `sample_data/`, as a reader would after `make demo`."""
    blocks = _python_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    shutil.copytree(tiny_model, tmp_path / "model")
    os.symlink(SAMPLE, tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NERBATCH_COMPILE", "0")
    scope: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - the README's own examples
    assert Path("test.tagged.conll").exists()


def test_tagger_tag_refuses_what_is_not_text(tiny_model):
    from nerbatch.core.record import Sentence

    tagger = nerbatch.Tagger.from_pretrained(tiny_model, precision="fp32", compile=False)
    with pytest.raises(TypeError, match="tag_sentences"):
        tagger.tag([Sentence(tokens=["a"])])


def test_openmp_threads_sleep_unless_the_user_says_otherwise():
    """Importing nerbatch sets OMP_WAIT_POLICY=PASSIVE before torch loads (spinning OpenMP threads starve
    the reading thread and other work on the cores), and keeps a value the user set."""
    import os
    import subprocess
    import sys

    code = "import os, nerbatch; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "ACTIVE"
