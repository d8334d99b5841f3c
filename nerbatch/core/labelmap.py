"""Label maps between tag sets: rename, merge or drop entity types (``PERSON`` -> ``PER``, ``DATE`` -> ``O``).

A map is a file or the name of a map shipped with nerbatch (``nerbatch/labelmaps/NAME.json``:
``ontonotes-conll``, ``wnut17-conll``). A file is either

* JSON: an object ``{"PERSON": "PER", "DATE": "O"}``, or ``{"about": "...", "map": {...}}`` (the shape of
  the shipped maps, with a note on where the types come from), or
* two columns, ``source<TAB>target`` a line (spaces work too; blank lines and ``#`` comments are skipped).

Keys are entity types, never tags (``PER``, not ``B-PER``); a target ``O`` drops the type's entities;
types the map does not name are kept as they are. :meth:`LabelMap.apply` maps one tag sequence and
keeps every entity boundary where it was: an ``I-`` tag that started an entity (after ``O`` or another
type) and would now continue the previous entity because both types map to one becomes ``B-``, so two
adjacent entities merged into one type stay two entities.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Iterable, Sequence

from ..errors import InputError
from .schemes import OUTSIDE, as_tags, is_tag

__all__ = ["LabelMap", "load_label_map", "shipped_maps", "tag_types"]

_PREFIXED = re.compile(r"^[BIES]-")
_FORMAT_HINT = "a label map is a JSON object {\"SOURCE\": \"TARGET\"} or two columns SOURCE<TAB>TARGET a line"


def shipped_maps() -> list[str]:
    """The names of the maps shipped with nerbatch (``--label-map NAME``)."""
    folder = resources.files("nerbatch").joinpath("labelmaps")
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def tag_types(tags: Iterable[str]) -> set[str]:
    """The entity types of tags or model labels (``B-PER``, ``I-LOC``, plain ``MISC``; ``O`` has none)."""
    return {tag[2:] for tag in as_tags(list(tags)) if tag != OUTSIDE}


@dataclass(frozen=True)
class LabelMap:
    """A checked map: ``pairs`` of (source type, target type or ``O``) in file order, ``lines`` the line
    of each pair in its file (None where unknown), ``name`` the file or the shipped map's name, ``shipped``
    whether it is one of nerbatch's maps (a whole documented tag set)."""

    name: str
    pairs: tuple[tuple[str, str], ...]
    lines: tuple[int | None, ...]
    shipped: bool = False

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.pairs)

    def apply(self, tags: Sequence[str]) -> list[str]:
        """The tags with their types mapped, entity boundaries kept (see the module docstring)."""
        mapping = self.mapping
        out: list[str] = []
        prev_type: str | None = None  # the previous tag's type as it came (None after O)
        prev_target: str | None = None  # ... and as it goes out (None when it went out as O)
        for tag in tags:
            if tag == OUTSIDE or not is_tag(tag):
                out.append(tag)
                prev_type = prev_target = None
                continue
            prefix, type_ = tag[0], tag[2:]
            target = mapping.get(type_, type_)
            if target == OUTSIDE:
                out.append(OUTSIDE)
                prev_type, prev_target = type_, None
                continue
            if prefix == "I" and type_ != prev_type and target == prev_target:
                prefix = "B"  # it started an entity: keep it apart from the one before
            out.append(f"{prefix}-{target}")
            prev_type, prev_target = type_, target
        return out

    def check_sources(self, known: Iterable[str], missing: str, hint: str | None = None,
                      option: str = "the label map") -> None:
        """Refuse a map naming a source type not in ``known`` (:class:`InputError` at the map's file and line):
        "``option`` maps 'X', a type ``missing``" (``missing``: ``"the model M does not have"``); ``hint``
        defaults to the known types."""
        known = set(known)
        for (source, _), line in zip(self.pairs, self.lines):
            if source not in known:
                raise InputError(
                    f"{option} maps {source!r}, a type {missing}",
                    path=self.name, line=line,
                    hint=hint or f"its types: {', '.join(sorted(known)) or 'none'}; fix the map or pick another",
                )

    def fingerprint(self) -> list[list[str]]:
        """What an output made with this map depends on (sorted pairs, JSON-safe)."""
        return sorted([s, t] for s, t in self.pairs)


def _check_type(value: object, what: str, path: str, line: int | None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"the {what} type must be a non-empty string, not {json.dumps(value)}", path=path, line=line,
                         hint=_FORMAT_HINT)
    if any(c.isspace() for c in value):
        raise InputError(f"the {what} type {value!r} holds whitespace", path=path, line=line, hint=_FORMAT_HINT)
    if _PREFIXED.match(value):
        raise InputError(f"the {what} type {value!r} has a tag prefix: a label map maps types, not tags",
                         path=path, line=line, hint=f"write {value[2:]!r}, not {value!r}")
    if what == "source" and value == OUTSIDE:
        raise InputError("'O' cannot be mapped: it is no entity type", path=path, line=line, hint=_FORMAT_HINT)
    return value


def _json_pairs(text: str, path: str) -> list[tuple[str, str, int | None]]:
    def no_duplicates(items: list) -> dict:
        seen = {}
        for key, value in items:
            if key in seen:
                raise InputError(f"{key!r} is mapped twice", path=path, line=_line_of(text, key, 2), hint=_FORMAT_HINT)
            seen[key] = value
        return seen

    try:
        obj = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as exc:
        raise InputError(f"invalid JSON: {exc.msg} at column {exc.colno}", path=path, line=exc.lineno,
                         hint=_FORMAT_HINT) from None
    if not isinstance(obj, dict):
        raise InputError(f"a JSON label map is an object, not {type(obj).__name__}", path=path, line=1, hint=_FORMAT_HINT)
    if isinstance(obj.get("map"), dict):
        extra = sorted(set(obj) - {"map", "about"})
        if extra:
            raise InputError(f"unknown member {extra[0]!r} beside 'map' (only 'about' may go with it)",
                             path=path, line=_line_of(text, extra[0]), hint=_FORMAT_HINT)
        obj = obj["map"]
    return [(key, value, _line_of(text, key)) for key, value in obj.items()]


def _line_of(text: str, key: str, nth: int = 1) -> int | None:
    """The line where ``"key":`` stands for the ``nth`` time in a JSON text (None if it is written with escapes)."""
    found = list(re.finditer(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text))
    return text.count("\n", 0, found[nth - 1].start()) + 1 if len(found) >= nth else None


def _column_pairs(text: str, path: str) -> list[tuple[str, str, int | None]]:
    pairs = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        cols = line.split()
        if len(cols) != 2:
            raise InputError(f"expected two columns (source type, target type), found {len(cols)}", path=path,
                             line=lineno, hint=_FORMAT_HINT)
        if cols[0] in seen:
            raise InputError(f"{cols[0]!r} is mapped twice (first on line {seen[cols[0]]})", path=path, line=lineno,
                             hint="keep one line per source type")
        seen[cols[0]] = lineno
        pairs.append((cols[0], cols[1], lineno))
    return pairs


def load_label_map(spec: str) -> LabelMap:
    """The map in file ``spec`` (JSON if it ends in ``.json`` or starts with ``{``, else two columns), or
    the shipped map of that name; :class:`InputError` (exit 2, at file:line) for anything malformed."""
    if os.path.exists(spec):
        try:
            with open(spec, encoding="utf-8-sig") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the label map: {getattr(exc, 'strerror', None) or exc}", path=spec) from None
        is_json = spec.lower().endswith(".json") or text.lstrip().startswith("{")
    elif spec in shipped_maps():
        text = resources.files("nerbatch").joinpath("labelmaps", f"{spec}.json").read_text(encoding="utf-8")
        is_json = True
    else:
        raise InputError(f"no label map {spec!r}: not a file, nor a map shipped with nerbatch",
                         hint=f"give a JSON or two-column file, or one of: {', '.join(shipped_maps())}")
    name, shipped = spec, not os.path.exists(spec)
    raw = _json_pairs(text, name) if is_json else _column_pairs(text, name)
    if not raw:
        raise InputError("the label map maps nothing", path=name, hint=_FORMAT_HINT)
    pairs, lines = [], []
    for source, target, line in raw:
        pairs.append((_check_type(source, "source", name, line), _check_type(target, "target", name, line)))
        lines.append(line)
    return LabelMap(name, tuple(pairs), tuple(lines), shipped)
