"""Plain text, cut into CoNLL-style tokens with character spans (:mod:`nerbatch.core.tokenize`).

``ReadOptions.layout`` says where sentences are: ``line`` (the default for text files: one
sentence a line, blank lines skipped), ``paragraph`` (blank-line separated paragraphs, their
hard-wrapped lines joined, split into sentences) or ``document`` (the whole file split into
sentences). A file is one document (``doc_id`` "0"), so every sentence gets its neighbours as
context. Each sentence keeps the text of its unit (the line, the paragraph or the file, lines
joined by ``\\n``) in ``text`` with its tokens' spans into it; ``part``/``last`` mark the sentences
of one unit, which the JSONL and HTML writers join back into one record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Iterator

from ..core.record import Sentence
from ..core.spans import Span, align
from ..core.tokenize import TextSettings, layout_records
from ..errors import InputError
from .base import ReadOptions, check_sentences, decoded_lines


def unit_sentences(
    text: str,
    layout: str,
    words: str,
    *,
    doc_id: str | None,
    index: int,
    path: str,
    line: int,
    source=None,
    gold: list[Span] | None = None,
) -> list[Sentence]:
    """The sentences of one unit of raw text (``layout`` as in :func:`nerbatch.core.tokenize.layout_records`,
    applied to ``text`` as a whole: a line stays one sentence, a paragraph or document is split).

    ``gold``: entity spans of the text (:mod:`nerbatch.core.spans`), which become the sentences' IOB2
    ``tags`` (sentences a span crosses are joined); raises :class:`~nerbatch.core.spans.SpanError`.
    """
    units = layout_records(text, layout, words)
    sentences = [sent for unit in units for sent in unit]
    tagged = align(text, sentences, gold) if gold is not None else [(toks, None) for toks in sentences]
    out = []
    for k, (toks, tags) in enumerate(tagged):
        first = toks[0][1]
        out.append(
            Sentence(
                tokens=[t for t, _, _ in toks],
                tags=tags,
                doc_id=doc_id,
                index=index + k,
                path=path,
                line=line + text.count("\n", 0, first),
                source=source,
                text=text,
                spans=[(a, b) for _, a, b in toks],
                part=k,
                last=k == len(tagged) - 1,
            )
        )
    return out


def read_text(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Sentences of a text file under ``options.layout_for("text")``, in order."""
    layout = options.layout_for("text")
    words = options.tokenizer
    index = 0
    lines: list[str] = []
    first_line = 0

    def checked(out: list[Sentence], line: int) -> list[Sentence]:
        """The sentences of a unit, or (under skip) one rejected unit when one of them is too long."""
        try:
            check_sentences(out, options)
        except InputError as exc:
            if options.on_error != "skip":
                raise
            return [Sentence(tokens=[], doc_id="0", path=path, line=line, source=out[0].text if out else "", error=str(exc))]
        return out

    def unit() -> list[Sentence]:
        nonlocal index, lines
        text = "\n".join(lines)
        lines = []
        out = checked(unit_sentences(text, "document", words, doc_id="0", index=index, path=path, line=first_line), first_line)
        index += sum(1 for s in out if s.error is None)
        return out

    for lineno, line, error in decoded_lines(path, options):
        if error is not None:
            if lines:
                yield from unit()
            yield Sentence(tokens=[], doc_id="0", path=path, line=lineno, source=line, error=error)
            continue
        if layout == "line":
            if not line.strip():
                continue
            for sent in checked(unit_sentences(line, "line", words, doc_id="0", index=index, path=path, line=lineno), lineno):
                yield sent
                index += sent.error is None
            continue
        if not line.strip():
            if layout == "paragraph":
                if lines:
                    yield from unit()
                continue
            if not lines:
                continue
        if not lines:
            first_line = lineno
        lines.append(line)
    if lines:
        yield from unit()


TEXT_FORMATS = ("text", "jsonl", "parquet", "hf")  # input formats that can hold raw text


def apply_contract(
    options: ReadOptions,
    recorded: dict | None,
    formats: Iterable[str] = TEXT_FORMATS,
    *,
    tokenizer_given: bool = False,
    layout_given: bool = False,
) -> tuple[ReadOptions, list[str]]:
    """Read options that cut raw text as the model's training data was cut.

    ``recorded``: the tokenisation contract in the model's ``nerbatch.json`` (``text``, see
    :class:`nerbatch.core.tokenize.TextSettings`; None for a model trained on tokens: nothing changes).
    Its word splitter and layout are applied unless the run gave ``--tokenizer``/``--layout``
    (``*_given``); returns the options and one-line notices: an explicit choice that differs from
    the recorded one for one of the input ``formats``, or tokenisation rules or an nltk version that
    differ from this installation's. Inputs that hold no raw text (CoNLL) get no notices.
    """
    formats = [f for f in formats if f in TEXT_FORMATS]
    if not isinstance(recorded, dict):
        return options, []
    try:
        saved = TextSettings.from_dict(recorded)
    except (TypeError, ValueError) as exc:
        note = f"the model's nerbatch.json has a text tokenisation this nerbatch cannot read ({exc}); using the defaults"
        return options, [note] if formats else []
    notes = []
    if not tokenizer_given:
        options = replace(options, tokenizer=saved.words)
    elif options.tokenizer != saved.words:
        notes.append(f"--tokenizer {options.tokenizer}: the model was trained on text cut by {saved.words}")
    if not layout_given:
        options = replace(options, layout=saved.layout)
    else:
        trained = ReadOptions(layout=saved.layout)
        other = sorted({trained.layout_for(f) for f in formats if trained.layout_for(f) != options.layout})
        if other:
            notes.append(f"--layout {options.layout}: the model was trained with --layout {'/'.join(other)} for such input")
    current = TextSettings.current(saved.layout, saved.words)
    differ = [
        f"{name} {getattr(saved, name)!r} then, {getattr(current, name)!r} now"
        for name in ("tokenizer", "splitter", "rules", "version")
        if any(d.startswith(name + ":") for d in current.differences(saved))
    ]
    if differ:
        notes.append(f"the model's training text was tokenised otherwise ({'; '.join(differ)}): some tokens may differ")
    return options, notes if formats else []
