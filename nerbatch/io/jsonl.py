"""JSON Lines: one object a line with ``tokens`` (or ``text``), optional gold ``tags``/``ner_tags``.

Unknown keys pass through byte for byte: the reader keeps each member's original JSON text
(so ``1e5``, ``1.10`` or a 40-digit decimal come out as they went in) and the writer re-emits it,
adding ``pred_tags`` and ``entities``. Input must be strict JSON: ``NaN``/``Infinity`` (which
Python's json module writes and reads, but no JSON parser has to) are refused, as are values
nested too deeply to read and integers too long to convert.

Gold can also be entity spans of the ``text`` (``entities``, ``spans``, ``label``, Label Studio
tasks; :mod:`nerbatch.core.spans`): the text is tokenised and the spans become IOB2 word tags, which a
JSONL output then carries as ``tags`` (the input's ``entities`` member is replaced by the
predicted entities, as for every input).

Values that did not come from JSON text (Parquet rows) are written as JSON too: timestamps,
dates and times as ISO 8601 strings, durations as ISO 8601 durations (``PT1.5S``), decimals as
strings (exact), binary as base64 strings, NaN and infinities as ``null``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import functools
import json
import math
import re
import sys
from itertools import accumulate
from json.decoder import JSONDecodeError, scanstring
from typing import Any, Iterator

from ..core.calibration import entity_scores
from ..core.record import RECORD_DOC, RecordParts, Sentence
from ..core.spans import SPAN_KEYS, Gold, SpanError, gold_spans
from ..errors import InputError
from .base import ReadOptions, Slice, Writer, check_sentences, decoded_lines

_WORD = re.compile(r"\S+")
# U+0085, U+2028 and U+2029 stay escaped (many line readers split on them); a CR can only be
# whitespace between JSON tokens (inside strings it is invalid), so it becomes a space
_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029", 0x0D: " "}
_ANY_BREAK = re.compile("[\x85\u2028\u2029\r]")
_WS = re.compile(r"[ \t\n\r]*")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
# keys the writers fill in: an input's own values for them are replaced, not passed through
OUTPUT_KEYS = ("pred_tags", "entities", "pred_scores")


class _Constant(Exception):
    """``NaN``, ``Infinity`` or ``-Infinity`` in the input: not JSON."""


def _no_constant(name: str) -> Any:
    raise _Constant(name)


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


class JsonObject(dict):
    """A JSON object as read, plus each member's original text: ``raw[key] = (value, key text,
    value text)``. The writer re-emits a member's text as long as ``self[key]`` is still that value."""

    raw: dict[str, tuple[Any, str, str]]


def _end(line: str, idx: int) -> None:
    idx = _WS.match(line, idx).end()
    if idx != len(line):
        raise JSONDecodeError("Extra data", line, idx)


def parse_json(line: str) -> Any:
    """One JSON text, strictly; an object comes back as a :class:`JsonObject` that keeps its text.

    Raises :class:`json.JSONDecodeError` (bad syntax), ``_Constant`` (NaN/Infinity),
    ``RecursionError`` (too deep) or ``ValueError`` (an integer too long to convert).
    """
    idx = _WS.match(line).end()
    if not line.startswith("{", idx):
        value, idx = _DECODER.raw_decode(line, idx)
        _end(line, idx)
        return value
    obj = JsonObject()
    raw: dict[str, tuple[Any, str, str]] = {}
    idx = _WS.match(line, idx + 1).end()
    if line.startswith("}", idx):
        idx += 1
    else:
        while True:
            if not line.startswith('"', idx):
                raise JSONDecodeError("Expecting property name enclosed in double quotes", line, idx)
            key_start = idx
            key, idx = scanstring(line, idx + 1, True)
            key_text = line[key_start:idx]
            idx = _WS.match(line, idx).end()
            if not line.startswith(":", idx):
                raise JSONDecodeError("Expecting ':' delimiter", line, idx)
            idx = _WS.match(line, idx + 1).end()
            value_start = idx
            value, idx = _DECODER.raw_decode(line, idx)
            obj[key] = value
            raw[key] = (value, key_text, line[value_start:idx])
            idx = _WS.match(line, idx).end()
            if line.startswith("}", idx):
                idx += 1
                break
            if not line.startswith(",", idx):
                raise JSONDecodeError("Expecting ',' delimiter", line, idx)
            idx = _WS.match(line, idx + 1).end()
    _end(line, idx)
    obj.raw = raw
    return obj


def _parse_line(line: str, path: str, lineno: int) -> Any:
    """:func:`parse_json`, with every way a line can fail as an :class:`InputError` at ``path:lineno``."""
    try:
        return parse_json(line)
    except JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno}", path=path, line=lineno) from None
    except _Constant as exc:
        raise InputError(
            f"invalid JSON: {exc.args[0]} is not a JSON value",
            path=path,
            line=lineno,
            hint="write null (or a string) instead; Python's json.dumps(..., allow_nan=False) refuses to write it",
        ) from None
    except RecursionError:
        raise InputError(
            "invalid JSON: arrays or objects nested too deeply to read",
            path=path,
            line=lineno,
            hint="flatten the record, or store the deep value as a string",
        ) from None
    except ValueError:  # int(): more digits than sys.get_int_max_str_digits()
        raise InputError(
            f"invalid JSON: an integer with more than {sys.get_int_max_str_digits()} digits, too long to read",
            path=path,
            line=lineno,
            hint="store it as a string",
        ) from None


def _token_objects(obj: dict, options: ReadOptions) -> bool:
    """A token list of objects beside the text (Prodigy's ``tokens``): the text is tokenised instead."""
    value = obj[options.tokens_key]
    return (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
        and isinstance(obj.get(options.text_key), str)
    )


def _gold(obj: dict, options: ReadOptions, path: str, line: int) -> Gold | None:
    """The record's gold entity spans (:func:`nerbatch.core.spans.gold_spans`), errors at ``path:line``."""
    try:
        return gold_spans(obj, options.text_key)
    except SpanError as exc:
        raise InputError(exc.message, path=path, line=line, hint=exc.hint) from None


def split_text(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Whitespace words of ``text`` with their character offsets (raw text that comes with tags)."""
    tokens, spans = [], []
    for m in _WORD.finditer(text):
        tokens.append(m.group())
        spans.append((m.start(), m.end()))
    return tokens, spans


def _str_list(value: Any, what: str, path: str, line: int) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what!r} must be a list of strings", path=path, line=line)
    return value


def _characters(text: str, what: str, path: str, line: int) -> None:
    """Refuse a lone surrogate (``"\\ud800"`` is valid JSON but no character: no tokenizer takes it)."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise InputError(
            f"{what!r} holds a lone surrogate, U+{ord(found.group()):04X} without its pair: not a character",
            path=path,
            line=line,
            hint="in JSON a \\uD800-\\uDBFF escape must be followed by a \\uDC00-\\uDFFF one",
        )


def record_to_sentences(
    obj: dict, options: ReadOptions, path: str, line: int, index: int, fmt: str = "jsonl"
) -> list[Sentence]:
    """The sentences of one JSON object or Parquet row (shared by both readers).

    A token list is one sentence. Raw ``text`` (no token list) is tokenised
    (:mod:`nerbatch.core.tokenize`) and cut into sentences by ``options.layout_for(fmt)``
    (``document`` by default: one record, several sentences); the sentences share the record's
    ``text`` and ``source``, spans into that text, ``part``/``last`` set, and a document id (the
    record's own, or one made up for the record) so they give each other context. Raw text with
    gold ``tags`` (or predicted tags to evaluate) is split on whitespace into one sentence: such
    tags can only be aligned with the whitespace words. Raw text with gold entity spans
    (``entities``/``spans``/``label``, a Label Studio task: :mod:`nerbatch.core.spans`) is tokenised and
    split like text without gold, and the spans become the words' IOB2 ``tags``.
    """
    text = None
    spans = None
    gold = None
    if options.tokens_key in obj and obj[options.tokens_key] is not None and not _token_objects(obj, options):
        tokens = _str_list(obj[options.tokens_key], options.tokens_key, path, line)
        _characters("".join(tokens), options.tokens_key, path, line)
    elif options.text_key in obj and obj[options.text_key] is not None:
        text = obj[options.text_key]
        if not isinstance(text, str):
            raise InputError(f"{options.text_key!r} must be a string", path=path, line=line)
        _characters(text, options.text_key, path, line)
        tokens, spans = split_text(text)
    elif (gold := _gold(obj, options, path, line)) is not None:  # a Label Studio task: data.text
        text = gold.text
        _characters(text, options.text_key, path, line)
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
    if text is not None and tags is None and gold is None:
        gold = _gold(obj, options, path, line)
    if text is not None and tags is None and (pred is None or gold is not None):
        from .text import unit_sentences

        try:
            sentences = unit_sentences(
                text, options.layout_for(fmt), options.tokenizer, doc_id=doc_id, index=index, path=path, line=line,
                source=obj, gold=None if gold is None else gold.spans,
            )
        except SpanError as exc:
            raise InputError(exc.message, path=path, line=line, hint=exc.hint) from None
        for sent in sentences:
            sent.line = line
        if pred is not None:  # evaluating span gold: the predictions are for nerbatch's tokens
            if sum(len(s.tokens) for s in sentences) != len(pred):
                raise InputError(
                    f"{sum(len(s.tokens) for s in sentences)} tokens (nerbatch's tokeniser) but {len(pred)} "
                    f"predicted tags in {options.pred_key!r}", path=path, line=line,
                )
            pos = 0
            for sent in sentences:
                sent.pred, pos = pred[pos : pos + len(sent.tokens)], pos + len(sent.tokens)
        if len(sentences) > 1 and doc_id is None:
            for sent in sentences:
                sent.doc_id = f"{RECORD_DOC}{path}:{line}"
        if sentences:
            check_sentences(sentences, options)
            return sentences
        tokens, spans = [], []  # no tokens at all: one empty sentence keeps the record
        if gold is not None:
            tags = []
    sentences = [
        Sentence(
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
    ]
    check_sentences(sentences, options)
    return sentences


def read_jsonl(path: str, options: ReadOptions = ReadOptions(), part: Slice | None = None) -> Iterator[Sentence]:
    """Stream sentences from a JSON Lines file (blank lines are skipped); ``part``: the lines of that
    slice only, numbered as in the whole file."""
    index = 0
    for lineno, line, error in decoded_lines(path, options, part):
        if error is None and not line.strip():
            continue
        try:
            if error is not None:
                raise InputError(error)
            obj = _parse_line(line, path, lineno)
            if not isinstance(obj, dict):
                raise InputError(f"expected a JSON object, found {type(obj).__name__}", path=path, line=lineno)
            sents = record_to_sentences(obj, options, path, lineno, index)
        except InputError as exc:
            if options.on_error != "skip":
                raise
            yield Sentence(tokens=[], path=path, line=lineno, source=line, error=str(exc))
            continue
        yield from sents
        index += len(sents)


class Encoded(str):
    """A member's value already as JSON text (:func:`entities_json`): written as it is."""

    __slots__ = ()


_STRING = json.encoder.encode_basestring  # what _ENCODER (ensure_ascii=False) encodes a str with


@functools.lru_cache(maxsize=4096)
def _entity_head(label: str) -> str:
    """An entity's JSON text up to its start: the same for every entity of a label (a few labels)."""
    return f'{{"label": {_STRING(label)}, "start": '


def entities_json(sentence: Sentence) -> Encoded:
    """The ``entities`` member a sentence gets, as JSON text: each predicted entity
    (:func:`nerbatch.core.calibration.entity_scores`, calibrated for a model with a calibration map)
    with its token and character offsets, text and score. Written directly, the text ``dumps`` gives
    a list of such dicts, without making the dicts (a random model's 754,500 entities in CoNLL-2003
    train x5: 10-30% of the JSONL writer's time)."""
    found = entity_scores(sentence.pred or [], sentence.scores)
    if not found:
        return Encoded("[]")
    tokens = sentence.tokens
    text = sentence.text if sentence.text is not None else " ".join(tokens)
    spans = sentence.spans
    # without spans the text is the tokens joined by spaces: token i starts at (letters before it) + i
    before = None if spans else list(accumulate(map(len, tokens), initial=0))
    out = []
    for label, start, end, score in found:
        if before is None:
            cs, ce = spans[start][0], spans[end - 1][1]
        else:
            cs, ce = before[start] + start, before[end] + end - 1
        if score is None:
            tail = ""
        else:  # (the encoder writes a float as float.__repr__ does, a non-finite one as null in dumps)
            tail = f', "score": {float.__repr__(score) if math.isfinite(score) else "null"}'
        out.append(f'{_entity_head(label)}{start}, "end": {end}, "char_start": {cs}, "char_end": {ce}, "text": {_STRING(text[cs:ce])}{tail}}}')
    return Encoded("[" + ", ".join(out) + "]")


def _json_default(value: Any) -> Any:
    """JSON for the non-JSON values of Parquet rows (see the module docstring)."""
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        ns = getattr(value, "value", None)  # pandas.Timedelta: nanoseconds
        if not isinstance(ns, int):
            ns = ((value.days * 86400 + value.seconds) * 10**6 + value.microseconds) * 1000
        sign, ns = ("-" if ns < 0 else ""), abs(ns)
        secs, frac = divmod(ns, 10**9)
        return f"{sign}PT{secs}" + (f".{frac:09d}".rstrip("0") if frac else "") + "S"
    if isinstance(value, decimal.Decimal):
        return str(value) if value.is_finite() else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return str(value)  # UUIDs and whatever else pyarrow hands back


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON lacks) replaced by None, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_json_default)  # made once, not per call


def dumps(value: Any) -> str:
    """Strict JSON text for a Python value (UTF-8, not ASCII-escaped)."""
    try:
        return _ENCODER.encode(value)
    except ValueError:  # NaN or an infinity somewhere
        return json.dumps(_finite(value), ensure_ascii=False, allow_nan=False, default=_json_default)


def _unchanged(read_value: Any, value: Any) -> bool:
    """Is ``value`` still the member's value as read? The same object, or (after a copy or a
    pickle, which keep no identity for numbers) an equal scalar of the same type."""
    if read_value is value:
        return True
    kind = type(value)
    if kind is not type(read_value) or kind not in (int, float, str, bool):
        return False
    return repr(value) == repr(read_value) if kind is float else value == read_value


def members(obj: dict, replace: dict | None = None, skip: tuple = ()) -> list[str]:
    """``"key": value`` texts of ``obj`` in order: a :class:`JsonObject`'s untouched members as
    they were read, ``replace``'s values in place of (or after) the object's own, ``skip`` left out."""
    raw = getattr(obj, "raw", None) or {}
    replace = dict(replace or {})
    out = []
    for key, value in obj.items():
        if key in skip:
            continue
        if key in replace:
            out.append(f"{dumps(str(key))}: {_text(replace.pop(key))}")
            continue
        kept = raw.get(key)
        if kept is not None and _unchanged(kept[0], value):
            out.append(f"{kept[1]}: {kept[2]}")
        else:
            out.append(f"{dumps(str(key))}: {dumps(value)}")
    out.extend(f"{dumps(str(key))}: {_text(value)}" for key, value in replace.items())
    return out


def _text(value: Any) -> str:
    return value if isinstance(value, Encoded) else dumps(value)


def _fresh_record(sentence: Sentence) -> dict:
    """The object written for a sentence that did not come from a JSON object (CoNLL, text)."""
    obj: dict = {"doc_id": sentence.doc_id, "index": sentence.index}
    if sentence.text is not None:  # raw text: the entities' char offsets are into it
        obj["text"] = sentence.text
    obj["tokens"] = sentence.tokens
    if sentence.tags is not None:
        obj["tags"] = sentence.tags
    return obj


def _predictions(sentence: Sentence) -> dict:
    """The members this run writes. A record of raw ``text`` also gets its ``tokens`` when they are
    not the text's whitespace words, so ``pred_tags`` can be lined up with them (and reading the
    output back gives the same tokens)."""
    new: dict = {}
    source = sentence.source
    if (
        isinstance(source, dict) and sentence.tags is not None and sentence.text is not None
        and "tags" not in source and "ner_tags" not in source
        and any(source.get(key) is not None for key in (*SPAN_KEYS, "annotations"))
    ):
        new["tags"] = sentence.tags  # gold from entity spans, as word tags (`evaluate` scores them)
    if (
        isinstance(sentence.source, dict)
        and sentence.text is not None
        and sentence.spans is not None
        and [m.span() for m in _WORD.finditer(sentence.text)] != [tuple(s) for s in sentence.spans]
    ):
        new["tokens"] = sentence.tokens
    new["pred_tags"] = sentence.pred
    new["entities"] = entities_json(sentence)
    return new


def output_line(sentence: Sentence) -> str:
    """The JSON text written for a sentence: its input object (untouched members in their original
    text) or a fresh one, plus the predictions."""
    new = _predictions(sentence)
    if isinstance(sentence.source, dict):
        return "{" + ", ".join(members(sentence.source, new)) + "}"
    found = new.pop("entities")  # (a fresh record has no "entities" of its own: it comes last)
    return dumps(_fresh_record(sentence) | new)[:-1] + ', "entities": ' + found + "}"


def _ascii(text: str) -> str:
    """JSON text with every non-ASCII character \\u-escaped (they occur only inside strings)."""
    return _NON_ASCII.sub(lambda m: json.dumps(m.group())[1:-1], text)


class JsonlWriter(Writer):
    """One line per input record: the sentences of one raw text are joined back (:class:`RecordParts`)."""

    def __init__(self, path: str, **kw) -> None:
        self.parts = RecordParts()
        super().__init__(path, **kw)

    def state(self) -> dict:
        return {"parts": self.parts.state()}

    def restore(self, state: dict) -> None:
        self.parts.restore(state.get("parts"))

    def write(self, sentence: Sentence) -> None:
        if not sentence.tokens and not isinstance(sentence.source, dict):
            return  # CoNLL passthrough lines have no JSONL counterpart
        if len(sentence.pred or []) != len(sentence.tokens):
            raise AssertionError(f"{sentence.path}:{sentence.line}: tag count differs from token count")
        joined = self.parts.add(sentence)
        if joined is None:
            return
        sentence = joined
        line = output_line(sentence)
        # (searching is 5x cheaper than translating every line; an ASCII line can hold only the CR)
        if ("\r" in line or not line.isascii()) and _ANY_BREAK.search(line) is not None:
            line = line.translate(_LINE_BREAKS)
        try:
            self.out.write(line + "\n")
        except UnicodeEncodeError:  # lone surrogates, or an output that is not UTF-8: escape
            self.out.write(_ascii(line) + "\n")
