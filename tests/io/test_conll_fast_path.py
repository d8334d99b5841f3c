"""The CoNLL reader's fast path (whole sentences split at once) reads exactly what the line-by-line path
reads: the same sentences, tags, passthrough lines, line numbers, rejects and errors, on messy inputs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, conll, read

WORD = st.sampled_from(["EU", "rejects", "German", "-DOCSTART-", "x\u00a0y", "Ünï", "'s", "\u2028", "a\rb"])
SEP = st.sampled_from([" ", " ", " ", "\t", "  "])
TAIL = st.sampled_from(["", "", "", " ", "\t"])


@st.composite
def token_line(draw) -> str:
    cols = draw(st.integers(min_value=2, max_value=4)) if draw(st.integers(0, 9)) == 0 else 4
    parts = [draw(WORD)] + ["NNP", "B-NP", draw(st.sampled_from(["O", "B-PER", "I-ORG"]))][-(cols - 1):]
    sep = draw(SEP)
    lead = " " if draw(st.integers(0, 19)) == 0 else ""
    return lead + sep.join(parts) + draw(TAIL)


@st.composite
def conll_text(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append("-DOCSTART- -X- -X- O")
        elif kind == 1:
            lines.append(draw(st.sampled_from(["", " ", "\t"])))
        else:
            lines.extend(draw(st.lists(token_line(), min_size=1, max_size=5)))
        lines.append("")
    if draw(st.booleans()):
        lines.pop()
    return "\n".join(lines) + ("\n" if draw(st.booleans()) else "")


def _read(path: str, options: ReadOptions) -> tuple[list, str | None]:
    try:
        return [dataclasses.astuple(s) for s in read(path, "conll", options)], None
    except InputError as exc:
        return [], str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=conll_text(), skip=st.booleans(), limit=st.sampled_from([None, 3]))
def test_fast_path_reads_what_the_line_path_reads(tmp_path, monkeypatch, text, skip, limit):
    path = tmp_path / "x.conll"
    path.write_text(text, encoding="utf-8", newline="")
    options = ReadOptions(on_error="skip" if skip else "fail", max_sentence_tokens=limit)
    fast = _read(str(path), options)
    with monkeypatch.context() as m:
        m.setattr(conll, "FAST_PATH", False)
        slow = _read(str(path), options)
    assert fast == slow


@pytest.mark.parametrize("copies", [1, 700])
def test_fast_path_on_a_long_file_crosses_batches(tmp_path, monkeypatch, copies):
    """Batches of 2,048 lines end at a blank line; sentences and line numbers stay right across them."""
    block = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n\n"
    path = tmp_path / "long.conll"
    path.write_text(block * copies + "Last NNP B-NP O", encoding="utf-8")
    fast = _read(str(path), ReadOptions())
    monkeypatch.setattr(conll, "FAST_PATH", False)
    assert fast == _read(str(path), ReadOptions())
    assert fast[0][-1][5] == copies * 7 + 1  # the last sentence's line number
