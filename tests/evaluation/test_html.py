"""Issue #13: the HTML report of `nerbatch evaluate --html` (self-contained, escaped, filterable)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.evaluation.evaluate import evaluate_files
from nerbatch.evaluation.html import render
from nerbatch.evaluation.scoring import Scorer

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# sentence k: the tokens, gold and predicted tags; every sentence holds errors except the third
SENTENCES = [
    (["<script>alert(1)</script>", "&amp;", '"quoted"', "it's"], ["B-PER", "O", "B-ORG", "O"], ["B-PER", "O", "B-LOC", "O"]),
    (["Turku", "is", "in", "Finland"], ["B-LOC", "O", "O", "B-LOC"], ["B-LOC", "O", "O", "O"]),
    (["Ann", "met", "Bob"], ["B-PER", "O", "B-PER"], ["B-PER", "O", "B-PER"]),
    (["New", "York", "City"], ["B-LOC", "I-LOC", "I-LOC"], ["B-LOC", "I-LOC", "O"]),
    (["a", "b"], ["O", "O"], ["B-MISC", "O"]),
    (["x", "y", "z"], ["B-ORG", "I-ORG", "O"], ["O", "B-PER", "I-PER"]),
]


def conll_text(sentences=SENTENCES, docs: int = 1) -> str:
    out = []
    for _ in range(docs):
        out.append("-DOCSTART- -X- O O\n\n")
        for tokens, gold, pred in sentences:
            out.extend(f"{t} X {g} {p}\n" for t, g, p in zip(tokens, gold, pred))
            out.append("\n")
    return "".join(out)


@pytest.fixture
def tagged(tmp_path) -> Path:
    path = tmp_path / "t.conll"
    path.write_text(conll_text(), encoding="utf-8")
    return path


def page_of(path: Path, **kw) -> str:
    return render(evaluate_files([str(path)], bootstrap=100, **kw))


def test_page_is_self_contained_and_escaped(tagged):
    page = page_of(tagged)
    assert page.startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for needle in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert needle not in page, needle
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&amp;amp;" in page and "&quot;quoted&quot;" in page and "it&#x27;s" in page
    assert page.count("<script>") == 1 and page.count("<svg") == 3


def test_page_shows_one_block_per_error_sentence(tagged):
    page = page_of(tagged)
    assert page.count('<div class="sent"') == 5
    assert re.search(r'id="shown">5</b> of 5 sentences', page)
    classes = re.findall(r'<div class="sent" data-classes="([^"]*)"', page)
    assert classes == ["type", "missed", "boundary", "spurious", "type_boundary"]
    # the summary and the per-type table are there
    assert "processed 20 tokens with 8 phrases; found: 8 phrases; correct: 4." in page
    assert "<th>wrong boundary</th>" in page and "<td>PER</td>" in page


def test_examples_are_capped_per_class_and_the_rest_counted(tmp_path):
    path = tmp_path / "big.conll"
    path.write_text(conll_text(docs=30), encoding="utf-8")
    page = page_of(path, examples=4)
    assert page.count('<div class="sent"') == 4 * 5  # the first 4 of each class (one class per sentence)
    assert "missed: 30 sentences, 4 shown; 26 more not shown" in page
    assert "--examples" in page


def test_page_without_errors_or_analysis():
    scorer = Scorer()
    scorer.add(["B-PER"], ["B-PER"], tokens=["Ann"])
    assert "No sentence holds an error." in render(scorer.result())
    bare = Scorer(analysis=False)
    bare.add(["B-PER"], ["O"])
    page = render(bare.result())
    assert "no analysis" in page and 'id="shown"' in page


def test_cli_writes_the_page(tagged, tmp_path):
    out = tmp_path / "r" / "report.html"
    res = CliRunner().invoke(cli, ["evaluate", str(tagged), "--html", str(out)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8").count('<div class="sent"') == 5
    res = CliRunner().invoke(cli, ["evaluate", str(tagged), "--html", str(tagged)])
    assert res.exit_code == 2 and "would overwrite the input" in res.stderr


# --------------------------------------------------------------------------- #
# the page in a real browser (headless Chromium)
# --------------------------------------------------------------------------- #


def _browser() -> str | None:
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


def dump_dom(url: str) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the browser's console lines (errors, CSP refusals)."""
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser on PATH (chromium, chromium-browser or google-chrome): "
                    "`make browser` or `apt-get install -y chromium` to run the HTML report's browser test")
    done = subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--enable-logging=stderr",
         "--v=0", "--dump-dom", url],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    return done.stdout, console


def _shown(dom: str) -> int:
    root = re.search(r"<html[^>]*>", dom).group(0)
    assert 'data-ready="1"' in root, root  # the script ran to its end
    assert "data-js-error" not in root, root
    return int(re.search(r'data-shown="(\d+)"', root).group(1))


def test_browser_console_errors_are_caught(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>nonexistent();</script></body></html>")
    _, console = dump_dom(bad.as_uri())
    assert any("nonexistent" in line for line in console)  # so a clean run below means something


def test_report_in_headless_chromium(tmp_path):
    path = tmp_path / "big.conll"
    path.write_text(conll_text(docs=3), encoding="utf-8")
    page = tmp_path / "report.html"
    page.write_text(page_of(path, examples=2), encoding="utf-8")
    dom, console = dump_dom(page.as_uri())
    assert console == []
    assert _shown(dom) == 2 * 5 == dom.count('class="sent"')
    # the filters, set from the address: one class, one type, both
    for fragment, expected in (("#class=missed", 2), ("#class=type_boundary&type=PER", 2)):
        dom, console = dump_dom(page.as_uri() + fragment)
        assert console == [] and _shown(dom) == expected, fragment
        blocks = re.findall(r'<div class="sent"[^>]*>', dom)
        assert len(blocks) == 10 and sum("hidden" not in b for b in blocks) == expected, fragment


def test_entity_score_figures_in_headless_chromium(tmp_path):
    """Issue #26: the reliability diagram and the precision/recall curve render (inline SVG, no script needed)."""
    from .test_calibration_report import write_jsonl

    result = evaluate_files([write_jsonl(tmp_path / "t.jsonl")], bootstrap=100, target_precision=0.7)
    page = tmp_path / "report.html"
    page.write_text(render(result), encoding="utf-8")
    dom, console = dump_dom(page.as_uri())
    assert console == []
    _shown(dom)  # the page's script still ran to its end
    for label in ("reliability diagram", "precision and recall by threshold"):
        assert f'aria-label="{label}"' in dom, label
    assert dom.count('class="bin"') == 5 and dom.count('class="target"') == 1
    points = re.search(r'<polyline class="curve" points="([^"]+)"', dom).group(1).split()
    assert len(points) == 6 and all(re.fullmatch(r"[\d.]+,[\d.]+", p) for p in points)
