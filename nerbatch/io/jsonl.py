"""JSON Lines: one object a line with ``tokens`` (or ``text``), optional gold ``tags``/``ner_tags``.

Unknown keys pass through; the writer adds ``pred_tags`` and ``entities``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterator

from ..errors import InputError
from ..record import Sentence, token_offsets
from ..scoring import conll_chunks
from .base import ReadOptions, Writer, decoded_lines

_WORD = re.compile(r"\S+")
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def split_text(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Whitespace words of ``text`` with their character offsets."""
    tokens, spans = [], []
    for m in _WORD.finditer(text):
        tokens.append(m.group())
        spans.append((m.start(), m.end()))
    return tokens, spans


def _str_list(value: Any, what: str, path: str, line: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what!r} must be a list of strings", path=path, line=line)
    return value


def record_to_sentence(
    obj: dict, options: ReadOptions, path: str, line: int, index: int
) -> Sentence:
    """Build a sentence from one JSON object or Parquet row (shared by both readers)."""
    text = None
    spans = None
    if options.tokens_key in obj and obj[options.tokens_key] is not None:
        tokens = _str_list(obj[options.tokens_key], options.tokens_key, path, line)
    elif options.text_key in obj and obj[options.text_key] is not None:
        text = obj[options.text_key]
        if not isinstance(text, str):
            raise InputError(f"{options.text_key!r} must be a string", path=path, line=line)
        tokens, spans = split_text(text)
    else:
        raise InputError(
            f"no {options.tokens_key!r} or {options.text_key!r} field",
            path=path,
            line=line,
            hint="name the field with --tokens-key/--text-key",
        )
    tags = None
    keys = [options.tags_key] if options.tags_key else ["tags", "ner_tags"]
    for key in keys:
        if obj.get(key) is not None:
            value = obj[key]
            if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
                raise InputError(
                    f"{key!r} holds integer label ids; nerbatch needs tag strings such as 'B-PER'",
                    path=path,
                    line=line,
                )
            tags = _str_list(value, key, path, line)
            if len(tags) != len(tokens):
                raise InputError(
                    f"{len(tokens)} tokens but {len(tags)} tags in {key!r}", path=path, line=line
                )
            break
    pred = None
    if options.pred_column is not None:  # evaluating: predictions are required
        if obj.get(options.pred_key) is None:
            raise InputError(f"no {options.pred_key!r} field to evaluate", path=path, line=line)
        pred = _str_list(obj[options.pred_key], options.pred_key, path, line)
        if len(pred) != len(tokens):
            raise InputError(f"{len(tokens)} tokens but {len(pred)} predicted tags", path=path, line=line)
    doc_keys = [options.doc_key] if options.doc_key else ["doc_id", "doc"]
    doc_id = None
    for key in doc_keys:
        if obj.get(key) is not None:
            doc_id = str(obj[key])
            break
    return Sentence(
        tokens=tokens,
        tags=tags,
        doc_id=doc_id,
        index=index,
        path=path,
        line=line,
        source=obj,
        text=text,
        spans=spans,
        pred=pred,
    )


def read_jsonl(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Stream sentences from a JSON Lines file (blank lines are skipped)."""
    index = 0
    for lineno, line, error in decoded_lines(path, options):
        if error is None and not line.strip():
            continue
        try:
            if error is not None:
                raise InputError(error)
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno}", path=path, line=lineno) from None
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=lineno)
            sent = record_to_sentence(obj, options, path, lineno, index)
        except InputError as exc:
            if options.on_error != "skip":
                raise
            yield Sentence(tokens=[], path=path, line=lineno, source=line, error=str(exc))
            continue
        yield sent
        index += 1


def entities(sentence: Sentence) -> list[dict]:
    """Predicted entities with token and character offsets, text and mean score."""
    pred = sentence.pred or []
    spans = sentence.spans or token_offsets(sentence.tokens)
    text = sentence.text if sentence.text is not None else " ".join(sentence.tokens)
    out = []
    for label, start, end in conll_chunks(pred):
        cs, ce = spans[start][0], spans[end - 1][1]
        item = {
            "label": label,
            "start": start,
            "end": end,
            "char_start": cs,
            "char_end": ce,
            "text": text[cs:ce],
        }
        if sentence.scores is not None:
            item["score"] = round(sum(sentence.scores[start:end]) / (end - start), 4)
        out.append(item)
    return out


def output_record(sentence: Sentence) -> dict:
    """The JSON object written for a sentence: its input object (or a fresh one) plus predictions."""
    if isinstance(sentence.source, dict):
        obj = dict(sentence.source)
    else:
        obj = {"doc_id": sentence.doc_id, "index": sentence.index, "tokens": sentence.tokens}
        if sentence.tags is not None:
            obj["tags"] = sentence.tags
    obj["pred_tags"] = sentence.pred
    obj["entities"] = entities(sentence)
    return obj


class JsonlWriter(Writer):
    def write(self, sentence: Sentence) -> None:
        if not sentence.tokens and not isinstance(sentence.source, dict):
            return  # CoNLL passthrough lines have no JSONL counterpart
        if len(sentence.pred or []) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: tag count differs from token count")
        obj = output_record(sentence)
        try:
            # U+0085, U+2028 and U+2029 stay escaped: many line readers (str.splitlines, JavaScript) split on them
            self.out.write(json.dumps(obj, ensure_ascii=False).translate(_LINE_BREAKS) + "\n")
        except UnicodeEncodeError:  # lone surrogates (from "\ud800" escapes in the input) stay escaped
            self.out.write(json.dumps(obj) + "\n")
