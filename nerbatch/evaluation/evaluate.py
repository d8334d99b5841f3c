"""Scoring files that carry gold and predicted tags (or tagging gold files first), as dicts.

Default numbers follow the CoNLL shared-task scorer (conlleval, IOB1 chunk rules); ``strict``
gives seqeval's strict IOB2 mode (an IOB1 file is converted to IOB2 first, as training does).
See ``nerbatch.evaluation.scoring`` for the counting itself.

Every file is checked while it is scored (:class:`FileScore`): both columns must hold NER tags
(``O``, ``B-X``, ``I-X``, ``E-X``, ``S-X``), and a chunk column (``B-NP``, ``I-VP``, ...) scored
against a NER column is refused: that is what an untagged ``word POS chunk NER`` gold file looks
like to a ``... gold pred`` reader. Numbers are never changed by the checks.

Label maps (:mod:`nerbatch.core.labelmap`) bring two tag sets together before scoring: ``label_map`` maps the
predictions' types (a model of another tag set, scored against this gold), ``gold_label_map`` the gold types;
either, both or neither (:class:`TagMaps`). Where the predictions carry entity scores (JSONL/Parquet outputs of
``tag``, or ``--model``), the result also holds their calibration (:mod:`nerbatch.evaluation.calibration`).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Iterable, Sequence

from ..core.labelmap import LabelMap, load_label_map, tag_types
from ..core.record import Sentence
from ..core.schemes import iob1_to_iob2, is_tag
from ..errors import InputError
from ..io import READABLE_OUTPUTS, ReadOptions, input_format, read
from ..io.atomic import is_stream
from ..io.base import STDIO, AtomicOutput
from ..io.conll import DOCSTART
from ..io.remote import is_url
from .calibration import Calibration
from .scoring import DEFAULT_BOOTSTRAP, Scorer, format_report

# chunk types of the CoNLL-2000 chunking task (the third column of the CoNLL-2003 files)
CHUNK_TYPES = frozenset({"ADJP", "ADVP", "CONJP", "INTJ", "LST", "NP", "PP", "PRT", "SBAR", "UCP", "VP"})

_HINTS = {
    "evaluate": "evaluate reads files with gold and predicted tags, `word ... gold pred` as `nerbatch tag` writes "
    "them for a gold file; to tag and score a gold file in one go use `nerbatch evaluate --model MODEL FILE`",
    "model": "the gold tags must be the last CoNLL column (or the JSONL/Parquet 'tags' field)",
    "report": "name the gold NER column with --tag-column N (or --tags-key), or drop --report "
    "for inputs without gold tags",
}


def add_sentence(scorer: Scorer, sent: Sentence, docstart: str | None = None) -> None:
    """Score one sentence (if it has gold tags); no checks (see :class:`FileScore`).

    Like conlleval on a tagged CoNLL file, ``-DOCSTART-`` lines count as ``O``/``O`` tokens (they
    change accuracy and the token count, never P/R/F1): ``docstart="tagged"`` reads their last two
    columns (a file written by ``tag``); ``"input"`` takes their last column as gold and ``O`` as the
    prediction the CoNLL writer appends; None ignores them.
    """
    if docstart is not None:
        for line in sent.prefix:
            if not line.startswith(DOCSTART):
                continue
            cols = line.split()
            if docstart == "tagged" and len(cols) >= 3:
                scorer.add([cols[-2]], [cols[-1]], sentence=False, doc=sent.doc_id, path=sent.path)
            elif docstart == "input" and len(cols) >= 2:
                scorer.add([cols[-1]], ["O"], sentence=False, doc=sent.doc_id, path=sent.path)
    if sent.tokens and sent.tags is not None:
        scorer.add(sent.tags, sent.pred or [], doc=sent.doc_id, tokens=sent.tokens, path=sent.path, line=sent.line)
        if scorer.calibration is not None:
            scorer.calibration.add(sent)


def _columns(line: str) -> list[str]:
    return line.split("\t") if "\t" in line else line.split()


class FileScore:
    """Checks and scores the sentences of one file (:meth:`add` each, then :meth:`finish`).

    ``fmt``/``options``: how the file was read (they name the columns in messages); ``docstart``:
    see :func:`add_sentence`; ``pred_from``: ``"column"`` (the file holds predictions) or
    ``"model"`` (the tagger made them); ``context`` picks the hint of the messages (``evaluate``,
    ``model``, ``report``); ``convert``: IOB1 -> IOB2 on gold and predictions (strict scoring of an
    IOB1 file); ``defer``: keep the first error and raise it from :meth:`finish` (scoring on the
    way while outputs are written must not stop the writing).
    """

    def __init__(
        self,
        scorer: Scorer,
        path: str,
        fmt: str,
        *,
        options: ReadOptions = ReadOptions(),
        docstart: str | None = None,
        pred_from: str = "column",
        context: str = "evaluate",
        convert: bool = False,
        defer: bool = False,
    ) -> None:
        self.scorer = scorer
        self.path = path
        self.fmt = fmt
        self.options = options
        self.docstart = docstart
        self.pred_from = pred_from
        self.hint = _HINTS[context]
        self.context = context
        self.convert = convert
        self.converted = 0  # sentences whose tags the IOB1 -> IOB2 conversion changed
        self.defer = defer
        self.error: InputError | None = None
        # what the two columns hold: any entity tag, only chunk types, the first chunk-tag line
        self.seen = {"gold": False, "pred": False}
        self.chunky = {"gold": True, "pred": True}
        self.chunk_types: dict[str, set[str]] = {"gold": set(), "pred": set()}
        self.chunk_line: dict[str, int | None] = {"gold": None, "pred": None}

    # -- messages ---------------------------------------------------------------------------
    def _label(self, which: str, sent: Sentence, i: int = 0) -> str:
        name = "gold" if which == "gold" else "predicted"
        if which == "pred" and self.pred_from == "model":
            return "the model's prediction"
        if self.fmt == "conll" and isinstance(sent.source, list) and sent.source:
            col = self.options.tag_column if which == "gold" else self.options.pred_column
            ncols = len(_columns(sent.source[min(i, len(sent.source) - 1)]))
            if col is not None and ncols:
                return f"the {name} column (column {col % ncols + 1} of {ncols})"
        if self.fmt in ("jsonl", "parquet"):
            if which == "pred":
                key = self.options.pred_key
            else:
                key = self.options.tags_key or next(
                    (k for k in ("tags", "ner_tags") if isinstance(sent.source, dict) and sent.source.get(k) is not None),
                    "tags",
                )
            return f"the {name} field {key!r}"
        return f"the {name} tags"

    @staticmethod
    def _line(sent: Sentence, i: int) -> int:
        return sent.line + i if isinstance(sent.source, list) else sent.line

    def _fail(self, message: str, line: int | None, hint: str | None = None) -> None:
        err = InputError(message, path=self.path, line=line, hint=hint or self.hint)
        if not self.defer:
            raise err
        if self.error is None:
            self.error = err

    # -- scoring ----------------------------------------------------------------------------
    def _check(self, which: str, tags: list[str], sent: Sentence) -> bool:
        for i, tag in enumerate(tags):
            if not is_tag(tag):
                hint = None
                if which == "pred" and self.context != "evaluate":
                    hint = "the model's labels are not NER tags; scoring needs a model that tags O, B-TYPE, I-TYPE"
                self._fail(
                    f"{self._label(which, sent, i)} holds {tag!r}, not a NER tag (O, B-TYPE or I-TYPE)",
                    self._line(sent, i),
                    hint,
                )
                return False
            if tag != "O":
                type_ = tag[2:]
                self.seen[which] = True
                if type_ in CHUNK_TYPES:
                    self.chunk_types[which].add(type_)
                    if self.chunk_line[which] is None:
                        self.chunk_line[which] = self._line(sent, i)
                else:
                    self.chunky[which] = False
        return True

    def add(self, sent: Sentence) -> None:
        """Check and score one sentence (records rejected under ``--on-error skip`` are left out)."""
        if self.error is not None or sent.error is not None:
            return
        if sent.tokens and sent.tags is None:
            what = "no gold tags for --report to score" if self.context == "report" else "no gold tags to evaluate against"
            self._fail(what, sent.line)
            return
        if sent.tokens:
            pred = sent.pred or []
            if not self._check("gold", sent.tags, sent) or not self._check("pred", pred, sent):
                return
            if self.convert:
                gold2, pred2 = iob1_to_iob2(sent.tags), iob1_to_iob2(pred)
                if gold2 != sent.tags or pred2 != pred:
                    self.converted += 1
                    sent = replace(sent, tags=gold2, pred=pred2)
        try:
            add_sentence(self.scorer, sent, self.docstart)
        except ValueError as exc:
            hint = "strict mode takes IOB2 tags (O, B-TYPE, I-TYPE); without --strict conlleval's rules apply"
            self._fail(str(exc), sent.line, hint=hint if self.scorer.strict else None)

    def _is_chunk_column(self, which: str) -> bool:
        return self.seen[which] and self.chunky[which]

    def finish(self) -> str | None:
        """Raise the first deferred error, or refuse a chunk column scored against a NER column
        (one column's entity types are all chunk types, the other's are not).

        Returns a note for the report when tags were converted from IOB1 to IOB2, else None.
        """
        if self.error is not None:
            raise self.error
        gold_chunk, pred_chunk = self._is_chunk_column("gold"), self._is_chunk_column("pred")
        if gold_chunk and self.seen["pred"] and not pred_chunk:
            types = ", ".join(sorted(self.chunk_types["gold"]))
            if self.context == "evaluate":
                what, hint = (
                    f"the gold column holds chunk tags ({types}), not NER tags: this looks like a gold file "
                    "without predictions (`word POS chunk NER`)",
                    "tag it first: `nerbatch tag FILE -o OUT --model MODEL`, then evaluate OUT; "
                    "or score it in one go: `nerbatch evaluate --model MODEL FILE`",
                )
            else:
                what, hint = f"the gold tags are chunk tags ({types}), not NER tags", self.hint
            raise InputError(what, path=self.path, line=self.chunk_line["gold"], hint=hint)
        if pred_chunk and self.seen["gold"] and not gold_chunk:
            types = ", ".join(sorted(self.chunk_types["pred"]))
            raise InputError(
                f"the predicted tags are chunk tags ({types}) while the gold tags are NER tags: "
                "the two columns do not hold the same kind of tags",
                path=self.path,
                line=self.chunk_line["pred"],
                hint="score a chunker against chunk tags and a NER model against NER tags",
            )
        if self.converted:
            return (
                f"{self.path}: IOB1 tags (I- starting an entity) converted to IOB2 for strict scoring "
                f"in {self.converted} sentence(s), gold and predicted alike"
            )
        return None


class TagMaps:
    """``label_map`` applied to the predicted tags and ``gold_label_map`` to the gold tags of each sentence
    (:meth:`map`), the types of both sides kept as they came, for :meth:`check` once everything is read:
    a map of yours naming a type found on neither side is refused (a typo, or a map for another tag set);
    a shipped map, which names a whole tag set whose rarer types a file may never show, only when none of
    its types is found."""

    def __init__(self, label_map: LabelMap | None = None, gold_label_map: LabelMap | None = None) -> None:
        self.pred, self.gold = label_map, gold_label_map
        self.seen: dict[str, set[str]] = {"pred": set(), "gold": set()}
        self.mapped: dict[str, set[str]] = {"pred": set(), "gold": set()}

    def __bool__(self) -> bool:
        return self.pred is not None or self.gold is not None

    def map(self, sent: Sentence) -> Sentence:
        """The sentence with its tags mapped (itself when there is no map)."""
        if not self or not sent.tokens:
            return sent
        out = {}
        for side, lm, values in (("gold", self.gold, sent.tags), ("pred", self.pred, sent.pred)):
            if values:
                self.seen[side] |= tag_types(t for t in values if is_tag(t))
                if lm is not None:
                    values = lm.apply(values)
                self.mapped[side] |= tag_types(t for t in values if is_tag(t))
            out[side] = values
        return replace(sent, tags=out["gold"], pred=out["pred"])

    def check(self) -> None:
        """Refuse a map with a source type that neither the predictions nor the gold tags hold."""
        known = self.seen["pred"] | self.seen["gold"]
        hint = (f"predicted types: {', '.join(sorted(self.seen['pred'])) or 'none'}; "
                f"gold types: {', '.join(sorted(self.seen['gold'])) or 'none'}")
        for lm, option in ((self.pred, "--label-map"), (self.gold, "--gold-label-map")):
            if lm is None:
                continue
            if not lm.shipped:
                lm.check_sources(known, "found in neither the predictions nor the gold tags", hint=hint, option=option)
            elif not known & set(lm.mapping):
                raise InputError(f"{option} {lm.name}: none of its types ({', '.join(lm.mapping)}) is found in the "
                                 "predictions or the gold tags", hint=hint + "; pick the map of their tag set")

    def note(self) -> str | None:
        """A note when, after mapping, predictions hold types the gold tags never have (all spurious)."""
        extra = self.mapped["pred"] - self.mapped["gold"]
        if not self or not extra or not self.mapped["gold"]:
            return None
        return (f"after the label maps, predicted types the gold tags never have: {', '.join(sorted(extra))} "
                "(their entities all count as spurious; map them with --label-map, or to O to leave them out)")


def _label_map(value: LabelMap | str | None) -> LabelMap | None:
    return load_label_map(value) if isinstance(value, str) else value


def _note(result: dict, note: str | None) -> None:
    if note:
        result.setdefault("notes", []).append(note)


def score_sentences(sentences: Iterable[Sentence], scorer: Scorer, docstart: str | None = None) -> Iterable[Sentence]:
    """Pass sentences through, checking and adding each one's gold and predicted tags to ``scorer``.

    The sentences are taken to come from one file, in the ``evaluate`` layout (``... gold pred``).
    """
    fs: FileScore | None = None
    for sent in sentences:
        if fs is None:
            fs = FileScore(scorer, sent.path, "conll" if isinstance(sent.source, list) else "jsonl", docstart=docstart)
        fs.add(sent)
        yield sent
    if fs is not None:
        fs.finish()


def evaluation_options(fmt: str, options: ReadOptions = ReadOptions()) -> ReadOptions:
    """Read options for tagged files: CoNLL ``... gold pred``; JSONL/Parquet ``tags`` + ``pred_tags``."""
    if fmt == "conll":
        return replace(options, tag_column=-2 if options.tag_column in (-1, None) else options.tag_column, pred_column=-1)
    return replace(options, pred_column=-1)


def is_iob1(sentences: Iterable[Sentence]) -> bool:
    """True when some gold sentence starts an entity with ``I-`` (IOB1, or IOB2 with such slips)."""
    for sent in sentences:
        if sent.tags and iob1_to_iob2(sent.tags) != sent.tags:
            return True
    return False


def _read_iob1(path: str, fmt: str, options: ReadOptions) -> bool:
    sentences = read(path, fmt, options)
    try:
        return is_iob1(sentences)
    finally:
        sentences.close()  # type: ignore[attr-defined]


def evaluate_files(
    paths: list[str],
    *,
    strict: bool = False,
    fmt: str | None = None,
    options: ReadOptions = ReadOptions(),
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    examples: int = 50,
    target_precision: float | None = None,
    label_map: LabelMap | str | None = None,
    gold_label_map: LabelMap | str | None = None,
) -> dict:
    """Score files that already hold gold and predicted tags; streams, so any size works.

    With ``strict`` a file whose gold tags are IOB1 is read twice: once to find that out, then
    scored with gold and predicted tags converted to IOB2 (a note in the result says so).
    ``bootstrap``/``seed``: resamples behind the confidence intervals; ``examples``: error sentences
    kept per error class (see :mod:`nerbatch.evaluation.analysis`). ``target_precision``: the
    calibration also gives the lowest entity-score threshold that reaches it. ``label_map`` /
    ``gold_label_map``: a map (or its file or shipped name) applied to the predicted / gold tags
    before anything is scored (:class:`TagMaps`).
    """
    maps = TagMaps(_label_map(label_map), _label_map(gold_label_map))
    scorer = Scorer(strict=strict, bootstrap=bootstrap, seed=seed, examples=examples,
                    calibration=Calibration(target_precision))
    notes: list[str | None] = []
    for path in paths:
        f = input_format(path, fmt)
        opts = evaluation_options(f, options)
        convert = strict and _read_iob1(path, f, opts)
        fs = FileScore(scorer, path, f, options=opts, docstart="tagged" if f == "conll" else None, convert=convert)
        for sent in read(path, f, opts):
            fs.add(maps.map(sent))
        notes.append(fs.finish())
    maps.check()
    result = scorer.result()
    result["files"] = list(paths)
    for note in [*notes, maps.note()]:
        _note(result, note)
    return result


def evaluate_model(
    model: str,
    paths: list[str],
    *,
    strict: bool = False,
    fmt: str | None = None,
    options: ReadOptions = ReadOptions(),
    tagger_options=None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    examples: int = 50,
    target_precision: float | None = None,
    label_map: LabelMap | str | None = None,
    gold_label_map: LabelMap | str | None = None,
) -> dict:
    """Tag gold files with ``model`` (nothing is written) and score the predictions. Raw text
    (span-annotated JSONL) is cut as the model's training text was (nerbatch.json), unless
    ``options`` name a layout or the whitespace tokenizer. The other arguments: as :func:`evaluate_files`'s."""
    from ..io.text import apply_contract
    from ..model.settings import read_model_config, text_contract
    from ..tagging.tagger import Tagger, TaggerOptions

    tagger = Tagger(model, tagger_options or TaggerOptions())
    options, _ = apply_contract(
        options, text_contract(read_model_config(model)),
        tokenizer_given=options.tokenizer != "treebank", layout_given=options.layout is not None,
    )
    maps = TagMaps(_label_map(label_map), _label_map(gold_label_map))
    if maps:
        maps.seen["pred"] |= tag_types(tagger.labels)  # what the model can predict, predicted here or not
    scorer = Scorer(strict=strict, bootstrap=bootstrap, seed=seed, examples=examples,
                    calibration=Calibration(target_precision))
    notes: list[str | None] = []
    for path in paths:
        f = input_format(path, fmt)
        convert = strict and _read_iob1(path, f, options)
        fs = FileScore(
            scorer, path, f, options=options, docstart="input" if f == "conll" else None,
            pred_from="model", context="model", convert=convert,
        )
        for sent in tagger.tag_sentences(read(path, f, options)):
            fs.add(maps.map(sent))
        notes.append(fs.finish())
    maps.check()
    result = scorer.result()
    result["files"] = list(paths)
    result["model"] = model
    for note in [*notes, maps.note()]:
        _note(result, note)
    return result


# --------------------------------------------------------------------------- #
# evaluate A B --compare: two predictions of the same gold, paired bootstrap
# --------------------------------------------------------------------------- #


def _differs(a: Sentence | None, b: Sentence | None) -> str | None:
    """What makes two sentences of two predictions of one gold file differ (None: nothing)."""
    if a is None or b is None:
        return "it has fewer sentences" if b is None else "it has more sentences"  # (b is the one checked)
    if bool(a.tokens) != bool(b.tokens):  # one file ends (trailing lines only) where the other goes on
        return "it has fewer sentences" if not b.tokens else "it has more sentences"
    if a.tokens != b.tokens:
        k = next((i for i, (x, y) in enumerate(zip(a.tokens, b.tokens)) if x != y), min(len(a.tokens), len(b.tokens)))
        if k < min(len(a.tokens), len(b.tokens)):
            return f"the tokens differ ({a.tokens[k]!r} != {b.tokens[k]!r})"
        return f"the sentences differ in length ({len(a.tokens)} != {len(b.tokens)} tokens)"
    if a.tags != b.tags:
        k = next((i for i, (x, y) in enumerate(zip(a.tags or [], b.tags or [])) if x != y), None)
        if k is None:
            return "one file has gold tags where the other has none"
        return f"the gold tags differ ({a.tags[k]!r} != {b.tags[k]!r})"
    if a.doc_id != b.doc_id:
        return "the document boundaries (-DOCSTART- / doc_id) differ"
    return None


def compare_files(
    path_a: str,
    path_b: str,
    *,
    strict: bool = False,
    fmt: str | None = None,
    options: ReadOptions = ReadOptions(),
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    examples: int = 50,
    label_map: LabelMap | str | None = None,
    gold_label_map: LabelMap | str | None = None,
) -> dict:
    """Score two prediction files of the same gold and test their F1 difference (B - A).

    Both are read in step; their tokens, gold tags and documents must agree (else
    :class:`InputError`, naming the first sentence that differs). The paired bootstrap resamples
    the same documents (or sentences) for both; see :func:`nerbatch.evaluation.analysis.paired_bootstrap`.
    ``label_map``/``gold_label_map``: as :func:`evaluate_files`'s, the same maps for both files.
    """
    from itertools import zip_longest

    from .analysis import paired_bootstrap

    samples = bootstrap if bootstrap > 0 else DEFAULT_BOOTSTRAP
    maps = TagMaps(_label_map(label_map), _label_map(gold_label_map))
    scorers, scores, readers = [], [], []
    for path in (path_a, path_b):
        f = input_format(path, fmt)
        opts = evaluation_options(f, options)
        scorer = Scorer(strict=strict, bootstrap=bootstrap, seed=seed, examples=examples)
        convert = strict and _read_iob1(path, f, opts)
        scorers.append(scorer)
        scores.append(FileScore(scorer, path, f, options=opts, docstart="tagged" if f == "conll" else None, convert=convert))
        readers.append(read(path, f, opts))
    try:
        for k, (a, b) in enumerate(zip_longest(*readers), 1):
            why = _differs(a, b)
            if why is not None:
                where = b if b is not None else a
                raise InputError(
                    f"sentence {k} does not match {path_a}"
                    + (f":{a.line}" if a is not None and a.line else "") + f": {why}",
                    path=path_b,
                    line=where.line if b is not None and b.line else None,
                    hint="--compare takes two prediction files of the same gold file",
                )
            scores[0].add(maps.map(a))
            scores[1].add(maps.map(b))
    finally:
        for r in readers:
            close = getattr(r, "close", None)
            if close is not None:
                close()
    maps.check()
    results = []
    for path, fs, scorer in zip((path_a, path_b), scores, scorers):
        note = fs.finish()
        result = scorer.result()
        result["files"] = [path]
        _note(result, note)
        results.append(result)
    (unit, counts_a), (_, counts_b) = (s.analysis.unit_counts() for s in scorers)
    comparison = paired_bootstrap(counts_a, counts_b, samples, seed, unit=unit)
    comparison["a"], comparison["b"] = path_a, path_b
    return {"mode": results[0]["mode"], "files": [path_a, path_b], "a": results[0], "b": results[1], "comparison": comparison}


def format_comparison(report: dict) -> str:
    """Text of :func:`compare_files`: conlleval's two lines for each file, then the difference."""
    lines: list[str] = []
    for key in ("a", "b"):
        result = report[key]
        lines.append(f"{key.upper()}: {result['files'][0]}")
        lines.extend(format_report({k: v for k, v in result.items() if k not in ("analysis", "notes")}).splitlines()[:2])
        lines.append("")
    c = report["comparison"]
    header = f"{'':<6}  {'precision':>9}  {'recall':>7}  {'FB1':>7}"
    lines.append(header)
    rows = {}
    for key in ("a", "b"):
        o = report[key]["overall"]
        rows[key] = [100 * o["precision"], 100 * o["recall"], 100 * o["f1"]]
        lines.append(f"{key.upper():<6}  {rows[key][0]:>9.2f}  {rows[key][1]:>7.2f}  {rows[key][2]:>7.2f}")
    d = [b - a for a, b in zip(rows["a"], rows["b"])]
    lines.append(f"{'B - A':<6}  {d[0]:>+9.2f}  {d[1]:>+7.2f}  {d[2]:>+7.2f}")
    lo, hi = (100 * v for v in c["f1_difference_interval"])
    lines.append("")
    lines.append(
        f"FB1 difference B - A: {100 * c['f1_difference']:+.2f} ({100 * c['level']:.0f}% CI {lo:+.2f} to {hi:+.2f}); "
        f"paired bootstrap p = {c['p_value']:.4f} ({c['samples']} samples over {c['units']} {c['unit']}, seed {c['seed']})"
    )
    notes = [n for key in ("a", "b") for n in report[key].get("notes") or []]
    if notes:
        lines.append("")
        lines.extend(f"note: {note}" for note in notes)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- #
# tag --report: the outputs of a run, scored from the files themselves
# --------------------------------------------------------------------------- #


def output_read_options(
    input_fmt: str, output_fmt: str, options: ReadOptions = ReadOptions(), *, scores: bool = False
) -> ReadOptions:
    """How to read back an output that ``tag`` wrote from an input read with ``options``.

    A CoNLL output is the input's lines plus a predicted column (so negative columns move one to
    the left), or ``word [gold] pred`` for other inputs; ``scores``: a score column follows the
    predicted one (``tag --scores``: columns move one more); JSONL/Parquet outputs keep the input's
    fields when they copy its records, else they use the standard ``tokens``/``tags`` names. The
    sentences are bounded as the input's were; lines are not (an output line is longer than its
    input line, and both are bounded by what the input allowed).
    """
    limits = {"max_line_bytes": None, "max_sentence_tokens": options.max_sentence_tokens}
    if output_fmt == "conll":
        added = 2 if scores else 1  # the columns tag appended
        if input_fmt != "conll":
            return ReadOptions(tag_column=-1 - added, pred_column=-added, **limits)
        tag, tok = options.tag_column, options.token_column
        return ReadOptions(
            token_column=tok if tok >= 0 else tok - added,
            tag_column=None if tag is None else (tag if tag >= 0 else tag - added),
            pred_column=-added,
            **limits,
        )
    keeps_records = (output_fmt == "jsonl" and input_fmt in ("jsonl", "parquet")) or output_fmt == input_fmt == "parquet"
    if keeps_records:
        return ReadOptions(tokens_key=options.tokens_key, text_key=options.text_key, tags_key=options.tags_key, pred_column=-1, **limits)
    return ReadOptions(pred_column=-1, **limits)


def score_output(
    path: str, output_fmt: str, scorer: Scorer, *, input_fmt: str, options: ReadOptions = ReadOptions(),
    scores: bool = False,
) -> None:
    """Score a finished output of ``tag`` by reading it back, as ``nerbatch evaluate`` would.

    ``input_fmt``/``options``: how its input was read. ``-DOCSTART-`` lines count like conlleval's
    (and like :func:`evaluate_files`). HTML outputs cannot be read back. ``scores``: a CoNLL output
    has ``tag --scores``'s column.
    """
    if output_fmt not in READABLE_OUTPUTS:
        raise InputError(f"the {output_fmt.upper()} output cannot be read back to score it", path=path)
    opts = output_read_options(input_fmt, output_fmt, options, scores=scores)
    fs = FileScore(scorer, path, output_fmt, options=opts, docstart="tagged" if output_fmt == "conll" else None, context="report")
    for sent in read(path, output_fmt, opts):
        fs.add(sent)
    fs.finish()


def check_report_input(
    path: str, fmt: str, options: ReadOptions = ReadOptions(), *, labels: Iterable[str] = (), sample: int = 200
) -> None:
    """Before a ``tag --report`` run: refuse an input without gold NER tags (first ``sample`` sentences).

    Refused: a text input, sentences without gold tags, gold values that are no NER tags, gold
    tags that are all chunk tags while the model (``labels``) tags entities. Errors of reading are
    left to the run (it reports them, or skips the file under ``--on-error skip``); stdin is not
    read (CoNLL or JSONL on stdin is checked while it is scored).
    """
    hint = _HINTS["report"]
    if fmt == "text":
        raise InputError("plain text has no gold tags for --report to score", path=path, hint="drop --report")
    if path == STDIO:
        return
    scorer = Scorer()
    fs = FileScore(scorer, path, fmt, options=options, pred_from="model", context="report")
    sentences = read(path, fmt, options)
    seen = 0
    try:
        while seen < sample:
            try:
                sent = next(sentences, None)
            except InputError:
                return
            if sent is None:
                break
            if sent.error is not None or not sent.tokens:
                continue
            seen += 1
            fs.add(replace(sent, pred=["O"] * len(sent.tokens)))
    finally:
        sentences.close()  # type: ignore[attr-defined]
    if fs._is_chunk_column("gold"):
        model_types = {lab[2:] for lab in labels if is_tag(lab) and lab != "O"}
        if not model_types or not model_types <= CHUNK_TYPES:
            types = ", ".join(sorted(fs.chunk_types["gold"]))
            raise InputError(
                f"the gold tags are chunk tags ({types}), not NER tags", path=path, line=fs.chunk_line["gold"], hint=hint
            )


def check_report_inputs(jobs, options: ReadOptions = ReadOptions(), *, labels: Iterable[str] = (), resume: bool = False) -> None:
    """Before a ``tag --report`` run: :func:`check_report_input` for each job's input, and no
    resumed HTML output (HTML cannot be read back, so only what a run writes can be scored)."""
    for job in jobs:
        if resume and job.output != STDIO and job.output_format not in READABLE_OUTPUTS:
            raise InputError(
                f"--report with --resume cannot score the {job.output_format.upper()} output: it cannot be read back",
                path=job.output,
                hint="write CoNLL, JSONL or Parquet, or run without --resume",
            )
        check_report_input(job.input, job.input_format, options, labels=labels)


def write_report(
    result: dict, *, text_path: str | None = None, json_path: str | None = None, html_path: str | None = None
) -> None:
    """Write the text, JSON and/or HTML report atomically (a :func:`compare_files` result: text
    and JSON only)."""
    def text() -> str:
        return (format_comparison(result) if "comparison" in result else format_report(result)) + "\n"

    def page() -> str:
        from .html import render

        return render(result)

    for path, body in ((text_path, text), (json_path, lambda: json.dumps(result, indent=2) + "\n"), (html_path, page)):
        if path:
            if not is_url(path):  # an object store has no folders to make
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            out = AtomicOutput(path)
            out.write(body())
            out.commit()


class JobScore:
    """The score of one output of a ``tag --report`` run (see :class:`ReportSink`)."""

    def __init__(self, sink: "ReportSink", job, resumed: bool) -> None:
        self.sink, self.job = sink, job
        self.on_the_way: FileScore | None = None
        if job.output == STDIO or is_stream(job.output) or job.output_format not in READABLE_OUTPUTS:
            if resumed:
                raise InputError("an HTML output cannot be resumed with a report", path=job.output,
                                 hint="write CoNLL, JSONL or Parquet, or run without --resume")
            # a CoNLL output carries -DOCSTART- lines that conlleval counts; score them the same way
            docstart = "input" if job.input_format == job.output_format == "conll" else None
            self.on_the_way = FileScore(sink.scorer, job.input, job.input_format, options=sink.options,
                                        docstart=docstart, pred_from="model", context="report", defer=True)

    def add(self, sent: Sentence) -> None:
        """A sentence as it is written (scored here only for outputs that cannot be read back)."""
        if self.on_the_way is not None:
            self.on_the_way.add(sent)

    def close(self) -> None:
        """The output is complete: score it (by reading it back where it can be)."""
        if self.on_the_way is not None:
            self.on_the_way.finish()
        else:
            score_output(self.job.output, self.job.output_format, self.sink.scorer,
                         input_fmt=self.job.input_format, options=self.sink.options, scores=self.sink.scores)


class ReportSink:
    """What an engine feeds for ``tag --report``: every output of the run scored into one
    :class:`~nerbatch.evaluation.scoring.Scorer`.

    A file output is scored by reading it back once complete, so a resumed or already complete output
    counts whole (the numbers of ``nerbatch evaluate`` on it); stdout and HTML, which cannot be read
    back (nor resumed, for HTML with a report), are scored on the way. ``scores``: CoNLL outputs have
    ``tag --scores``'s column.
    """

    def __init__(self, scorer: Scorer, options: ReadOptions = ReadOptions(), scores: bool = False) -> None:
        self.scorer, self.options, self.scores = scorer, options, scores

    def open(self, job, resumed: bool = False) -> JobScore:
        return JobScore(self, job, resumed)

    def merge(self, other: "ReportSink") -> None:
        """Add the scores of outputs scored into ``other`` (a Ray worker's sink), after these."""
        self.scorer.merge(other.scorer)


def evaluate(
    files: Sequence[str],
    *,
    model: str | None = None,
    strict: bool = False,
    compare: bool = False,
    input_format: str | None = None,
    glob: str | None = None,
    split: str | None = None,
    config: str | None = None,
    text_path: str | None = None,
    json_path: str | None = None,
    html_path: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = 0,
    examples: int = 50,
    tagger_options=None,
    max_line_bytes: int | None = None,
    max_sentence_tokens: int | None = None,
    notify=None,
    target_precision: float | None = None,
    label_map: LabelMap | str | None = None,
    gold_label_map: LabelMap | str | None = None,
) -> dict:
    """``nerbatch evaluate`` as one call: score ``files`` (gold and predicted tags; with ``model``, gold
    files tagged first, nothing written) and write the reports asked for; returns the result dict
    (what ``--json`` writes). ``compare``: ``files`` are two predictions of the same gold, scored with
    a paired bootstrap (the result of :func:`compare_files`). Folders are walked (``glob``);
    ``split``/``config`` pick a Hugging Face dataset's split and configuration; ``max_line_bytes``/
    ``max_sentence_tokens`` bound what one input line and one sentence may hold (default: ReadOptions'). Every report path is
    checked before anything is read (never an input, never twice). ``notify``: called with
    one-line notices (input folders' non-regular files left out). ``target_precision``: the calibration of the
    entity scores also gives the lowest threshold reaching it. ``label_map`` maps the predictions' types (e.g.
    a model of another tag set) and ``gold_label_map`` the gold types, before scoring: a JSON or two-column file,
    or a shipped map's name (:mod:`nerbatch.core.labelmap`); a map naming a type that neither side holds is an
    error."""
    from ..io.paths import Access, check_write_paths, expand_inputs, skipped_note

    skipped: list[str] = []
    paths = [p for p, _ in expand_inputs(list(files), glob, input_format, skipped)]
    if skipped and notify is not None:
        notify(skipped_note(skipped))
    limits = {k: v for k, v in (("max_line_bytes", max_line_bytes), ("max_sentence_tokens", max_sentence_tokens)) if v is not None}
    options = ReadOptions(split=split, config=config, **limits)
    check_write_paths([Access(f) for f in paths], {"--output": text_path, "--json": json_path, "--html": html_path},
                      models=[model])
    maps = {"label_map": _label_map(label_map), "gold_label_map": _label_map(gold_label_map)}
    analysis = {"bootstrap": bootstrap, "seed": seed, "examples": examples}
    if compare:
        if len(paths) != 2:
            raise InputError(f"--compare takes two prediction files of the same gold (A B), not {len(paths)}")
        if model or html_path:
            raise InputError(f"--compare does not go with {'--model' if model else '--html'}",
                             hint="tag both first, then compare the tagged files; --html takes one file")
        result = compare_files(paths[0], paths[1], strict=strict, fmt=input_format, options=options, **analysis, **maps)
        write_report(result, text_path=text_path, json_path=json_path)
        return result
    if model:
        from ..tagging.tagger import TaggerOptions

        result = evaluate_model(model, paths, strict=strict, fmt=input_format, options=options,
                                tagger_options=tagger_options or TaggerOptions(), target_precision=target_precision,
                                **analysis, **maps)
    else:
        result = evaluate_files(paths, strict=strict, fmt=input_format, options=options,
                                target_precision=target_precision, **analysis, **maps)
    write_report(result, text_path=text_path, json_path=json_path, html_path=html_path)
    return result
