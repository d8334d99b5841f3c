"""Raw-text benchmark: how close tokenisation and sentence splitting of raw text come to CoNLL-2003.

    .venv/bin/python benchmarks/raw_text.py                 # nerbatch.core.tokenize + whitespace baseline
    .venv/bin/python benchmarks/raw_text.py --candidates    # also every candidate library installed
    .venv/bin/python benchmarks/raw_text.py --extra-site DIR --candidates   # DIR: `pip install --target`

The gold tokens of each sentence are detokenised into plausible raw text (``detokenize.py``) with
every gold token's character span. Then:

* **token boundary P/R/F1**: a predicted token counts when its ``(start, end)`` is exactly a gold
  token's, on the text of each sentence (one sentence a line, the ``line`` layout);
* **sentence P/R**: each document's sentences are joined by one space into a paragraph (no line
  breaks); a predicted split point counts when a gold sentence starts there. ``R punct`` is the
  recall over the gold boundaries that follow ``. ! ?`` (optionally with closing quotes or
  brackets): CoNLL's headlines, datelines and table rows end without punctuation, so about half
  the gold boundaries cannot be seen in flat text at all. ``tok F1 para`` is token boundary F1
  of the tokens of the split sentences against all gold tokens of the paragraph;
* **words/s**: gold words per second (best of ``--repeat``) of tokenising the sentence texts, of
  splitting the paragraphs alone, and of splitting and tokenising them (what paragraph input costs).

With ``--model MODEL_FOLDER`` the same run also tags with that model (fp32, not compiled, as
``nerbatch tag --precision fp32 --no-compile``; :func:`entity_scores_on_raw`):

* **entity P/R/F1 by exact character span and type** against the CoNLL gold entities, of the model
  on the gold tokens (nerbatch's CoNLL reader, documents from -DOCSTART-) and on the raw text of each
  document as a JSONL record (nerbatch's JSONL reader): one sentence a line (``line`` layout) and all
  sentences in one paragraph without line breaks (``document`` layout, the default for ``text``
  fields: splitting is nerbatch's job). Targets of issue #10: raw lines within 0.5 F1 points of gold
  tokens, paragraphs within 1.5;
* **the model's words/s** on the gold tokens in the same run, and the ratio of tokenising (lines)
  and of splitting + tokenising (paragraphs) to it (target: at least 20x).

    .venv/bin/python benchmarks/raw_text.py --model build/conll-model
    .venv/bin/python benchmarks/raw_text.py --model /tmp/demo-model --limit-docs 20   # a quick check

Results: ``benchmarks/results/raw_text.json`` and markdown tables on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from detokenize import GoldDocument, detokenize, join_sentences, read_conll  # noqa: E402
from machine import cpu_name  # noqa: E402 - benchmarks/ is on the path of a script run from it

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "conll2003"
RESULTS = ROOT / "benchmarks" / "results" / "raw_text.json"

Spans = list[tuple[int, int]]
# A sentence-final . ! ? possibly followed by closing quotes/brackets: a boundary flat text shows.
_TERMINAL = re.compile(r"""[.!?]["')\]]*$""")

# Install weight measured with `pip install --target EMPTY_DIR NAME` (the package and all it pulls
# in), and what it adds to nerbatch's own venv (which already has regex, joblib, tokenizers, ...).
INSTALL = {
    "nltk": ("23 MB (nltk 14, regex, joblib, click, tqdm, defusedxml)", "15 MB: nltk, defusedxml"),
    "segtok": ("4 MB (segtok <1, regex)", "<1 MB"),
    "syntok": ("4 MB (syntok <1, regex)", "<1 MB"),
    "pysbd": ("1 MB", "1 MB"),
    "blingfire": ("99 MB (models for many languages)", "99 MB"),
    "spacy": ("315 MB (44 packages)", "199 MB: 18 packages"),
    "tokenizers": ("46 MB (with huggingface_hub)", "0: a transformers dependency"),
    "": ("0", "0"),
}


# --------------------------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------------------------- #


@dataclass
class Bench:
    sentences: list[tuple[str, Spans]]  # raw text of each sentence, gold token spans
    paragraphs: list[tuple[str, Spans, Spans]]  # doc text, gold sentence spans, gold token spans
    words: int


def build(docs: list[GoldDocument]) -> Bench:
    sentences = []
    paragraphs = []
    for doc in docs:
        detok = [detokenize(s.tokens, s.pos) for s in doc.sentences]
        sentences.extend(detok)
        text, sent_spans, tok_spans = join_sentences(detok)
        paragraphs.append((text, sent_spans, [sp for sent in tok_spans for sp in sent]))
    return Bench(sentences, paragraphs, sum(len(sp) for _, sp in sentences))


# --------------------------------------------------------------------------------------------- #
# Candidates: name -> (tokenise: text -> token spans, split: text -> sentence spans or None,
#                      split+tokenise: text -> token spans of all sentences or None, package)
# --------------------------------------------------------------------------------------------- #


@dataclass
class Candidate:
    name: str
    package: str  # distribution whose version and install weight are reported ("" none)
    tokenize: Callable[[str], Spans] | None
    split: Callable[[str], Spans] | None = None
    split_tokens: Callable[[str], Spans] | None = None
    note: str = ""


def _align(text: str, tokens: Sequence[str]) -> Spans:
    """Spans of ``tokens`` found in order in ``text`` (for libraries that return strings only)."""
    out, pos = [], 0
    for tok in tokens:
        i = text.find(tok, pos)
        if i < 0:
            continue  # a token the library rewrote: it simply counts as missed
        out.append((i, i + len(tok)))
        pos = i + len(tok)
    return out


def _trim(text: str, spans) -> Spans:
    out = []
    for a, b in spans:
        while b > a and text[b - 1].isspace():
            b -= 1
        while a < b and text[a].isspace():
            a += 1
        if a < b:
            out.append((a, b))
    return out


def _tokens_of(split: Callable[[str], Spans], tokenize: Callable[[str], Spans]) -> Callable[[str], Spans]:
    def run(text: str) -> Spans:
        out = []
        for a, b in split(text):
            out.extend((a + s, a + e) for s, e in tokenize(text[a:b]))
        return out

    return run


def cand_nerbatch() -> Candidate:
    from nerbatch.core import tokenize as nt

    return Candidate(
        "nerbatch.core.tokenize",
        "nltk",
        lambda t: [(s, e) for _, s, e in nt.tokenize(t)],
        nt.sentence_spans,
        lambda t: [(s, e) for sent in nt.split_sentences(t) for _, s, e in sent],
        "Treebank + Punkt (untrained) + measured fixes",
    )


def cand_whitespace() -> Candidate:
    word = re.compile(r"\S+")
    return Candidate("whitespace (today)", "", lambda t: [m.span() for m in word.finditer(t)], note="nerbatch before #10")


def cand_nltk() -> Candidate:
    from nltk.tokenize.punkt import PunktSentenceTokenizer
    from nltk.tokenize.treebank import TreebankWordTokenizer

    words, sents = TreebankWordTokenizer(), PunktSentenceTokenizer()
    tok = lambda t: list(words.span_tokenize(t))  # noqa: E731
    split = lambda t: list(sents.span_tokenize(t))  # noqa: E731
    return Candidate("nltk Treebank + Punkt", "nltk", tok, split, _tokens_of(split, tok), "plain, no fixes")


def cand_segtok() -> Candidate:
    from segtok.segmenter import split_single
    from segtok.tokenizer import split_contractions, web_tokenizer

    tok = lambda t: _align(t, split_contractions(web_tokenizer(t)))  # noqa: E731

    def split(t: str) -> Spans:
        return _align(t, [s.strip() for s in split_single(t) if s.strip()])

    return Candidate("segtok", "segtok", tok, split, _tokens_of(split, tok), "web_tokenizer + split_contractions")


def cand_syntok() -> Candidate:
    from syntok import segmenter
    from syntok.tokenizer import Tokenizer

    tk = Tokenizer(replace_not_contraction=False)

    def tok(t: str) -> Spans:
        return [(x.offset, x.offset + len(x.value)) for x in tk.tokenize(t)]

    def sentences(t: str) -> list[list]:
        return [s for para in segmenter.analyze(t) for s in para]

    def split(t: str) -> Spans:
        return [(s[0].offset, s[-1].offset + len(s[-1].value)) for s in sentences(t) if s]

    def split_tokens(t: str) -> Spans:
        return [(x.offset, x.offset + len(x.value)) for s in sentences(t) for x in s]

    return Candidate("syntok", "syntok", tok, split, split_tokens, "replace_not_contraction=False")


def cand_blingfire() -> Candidate:
    import blingfire

    def tok(t: str) -> Spans:
        return [tuple(o) for o in blingfire.text_to_words_with_offsets(t)[1]] if t.strip() else []

    def split(t: str) -> Spans:
        return _trim(t, blingfire.text_to_sentences_and_offsets(t)[1]) if t.strip() else []

    return Candidate("blingfire", "blingfire", tok, split, _tokens_of(split, tok))


def cand_spacy() -> Candidate:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")

    def tok(t: str) -> Spans:
        return [(x.idx, x.idx + len(x.text)) for x in nlp.tokenizer(t) if not x.is_space]

    def split(t: str) -> Spans:
        return [(s.start_char, s.end_char) for s in nlp(t).sents]

    def split_tokens(t: str) -> Spans:
        return [(x.idx, x.idx + len(x.text)) for x in nlp(t) if not x.is_space]

    return Candidate("spaCy blank('en')", "spacy", tok, split, split_tokens, "rule tokenizer + sentencizer")


def cand_pysbd() -> Candidate:
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)

    def split(t: str) -> Spans:
        return _trim(t, [(s.start, s.end) for s in seg.segment(t)])

    return Candidate("pysbd (sentences only)", "pysbd", None, split)


def cand_bert() -> Candidate:
    from tokenizers.pre_tokenizers import BertPreTokenizer

    pre = BertPreTokenizer()
    return Candidate("tokenizers BertPreTokenizer", "tokenizers", lambda t: [o for _, o in pre.pre_tokenize_str(t)], note="words only")


CANDIDATES = [cand_nltk, cand_segtok, cand_syntok, cand_blingfire, cand_spacy, cand_pysbd, cand_bert]


# --------------------------------------------------------------------------------------------- #
# Metrics
# --------------------------------------------------------------------------------------------- #


def prf(tp: int, npred: int, ngold: int) -> tuple[float, float, float]:
    p = tp / npred if npred else 0.0
    r = tp / ngold if ngold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def boundary_counts(pred: Spans, gold: Spans) -> tuple[int, int, int]:
    return len(set(pred) & set(gold)), len(pred), len(gold)


def timed(fn: Callable[[str], Spans], texts: list[str], repeat: int) -> tuple[list[Spans], float]:
    best = float("inf")
    out: list[Spans] = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = [fn(t) for t in texts]
        best = min(best, time.perf_counter() - t0)
    return out, best


def evaluate(cand: Candidate, bench: Bench, repeat: int) -> dict:
    row: dict = {"name": cand.name, "note": cand.note}
    if cand.tokenize is not None:
        cand.tokenize("Warm up, please.")
        preds, secs = timed(cand.tokenize, [t for t, _ in bench.sentences], repeat)
        tp = npred = ngold = 0
        for (_, gold), pred in zip(bench.sentences, preds):
            a, b, c = boundary_counts(pred, gold)
            tp, npred, ngold = tp + a, npred + b, ngold + c
        row["token_p"], row["token_r"], row["token_f1"] = prf(tp, npred, ngold)
        row["tokenize_words_per_s"] = bench.words / secs
    if cand.split is not None:
        cand.split("Warm up. Please.")
        preds, secs = timed(cand.split, [t for t, _, _ in bench.paragraphs], repeat)
        tp = npred = ngold = tp_p = ngold_p = 0
        for (text, gold, _), pred in zip(bench.paragraphs, preds):
            g = {s for s, _ in gold[1:]}
            p = {s for s, _ in pred[1:]}
            tp, npred, ngold = tp + len(g & p), npred + len(p), ngold + len(g)
            gp = {gold[k + 1][0] for k in range(len(gold) - 1) if _TERMINAL.search(text[gold[k][0] : gold[k][1]])}
            tp_p, ngold_p = tp_p + len(gp & p), ngold_p + len(gp)
        row["sent_p"], row["sent_r"], row["sent_f1"] = prf(tp, npred, ngold)
        row["sent_r_punct"] = tp_p / ngold_p if ngold_p else 0.0
        row["gold_boundaries"], row["gold_boundaries_punct"] = ngold, ngold_p
        row["split_words_per_s"] = bench.words / secs
    if cand.split_tokens is not None:
        preds, secs = timed(cand.split_tokens, [t for t, _, _ in bench.paragraphs], repeat)
        tp = npred = ngold = 0
        for (_, _, gold), pred in zip(bench.paragraphs, preds):
            a, b, c = boundary_counts(pred, gold)
            tp, npred, ngold = tp + a, npred + b, ngold + c
        row["para_token_f1"] = prf(tp, npred, ngold)[2]
        row["split_tokenize_words_per_s"] = bench.words / secs
    return row


# --------------------------------------------------------------------------------------------- #
# Entity F1 on raw text: one model, through nerbatch's own readers and Tagger (--model)
# --------------------------------------------------------------------------------------------- #

# The two raw-text inputs: name -> (JSONL layout, separator of the document's sentences in its text).
# "lines": each document one record, one sentence a line, cut by the ``line`` layout. "paragraphs":
# each document one record, its sentences joined by a space (no line break at all), cut by the
# ``document`` layout, the default for JSONL/Parquet ``text`` fields (for text without line breaks
# ``--layout paragraph`` cuts exactly the same: one paragraph, split into sentences by Punkt).
RAW_INPUTS = {"lines": ("line", "\n"), "paragraphs": ("document", " ")}
TARGETS = {"lines": 0.5, "paragraphs": 1.5}  # F1 points below the same model on gold tokens, at most
SPEED_TARGET = 20.0  # tokenising at least this many times the model's words/s


def _iob_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    from nerbatch.evaluation.scoring import conll_chunks

    return conll_chunks(list(tags))


def _char_entities(tags: Sequence[str], spans: Spans) -> set[tuple[str, int, int]]:
    return {(label, spans[s][0], spans[e - 1][1]) for label, s, e in _iob_chunks(tags)}


def make_tagger(model: str, device: str = "auto"):
    """The model as ``nerbatch tag --precision fp32 --no-compile`` loads it (eager fp32: comparable runs)."""
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    return Tagger(model, TaggerOptions(device=device, precision="fp32", compile=False))


def _read_options(tagger, layout: str):
    """What ``nerbatch tag --layout LAYOUT`` reads JSONL text with: the model's recorded word splitter
    (``nerbatch.json``, a model trained on raw text) applied as the CLI does."""
    from nerbatch.io import ReadOptions
    from nerbatch.io.text import apply_contract
    from nerbatch.model.settings import read_model_config, text_contract

    recorded = text_contract(read_model_config(tagger.model_name)) if os.path.isdir(tagger.model_name) else None
    options, notes = apply_contract(ReadOptions(layout=layout), recorded, ["jsonl"], layout_given=True)
    for note in notes:
        print(f"  nerbatch: {note}", file=sys.stderr)
    return options


def _tag_timed(tagger, sentences) -> tuple[list, float, float]:
    """Tag a stream of sentences as ``nerbatch tag`` does (reading and tokenising in the background
    producer); the sentences, wall seconds and seconds inside the model's forward passes."""
    fwd = tagger.forward_seconds
    t0 = time.perf_counter()
    out = list(tagger.tag_sentences(sentences))
    return out, time.perf_counter() - t0, tagger.forward_seconds - fwd


def _prf_dict(tp: int, npred: int, ngold: int) -> dict:
    p, r, f = prf(tp, npred, ngold)
    return {"precision": p, "recall": r, "f1": f, "correct": tp, "predicted": npred, "gold": ngold}


def _count(pred: dict[int, set], gold: dict[int, set]) -> dict:
    tp = npred = ngold = 0
    for k, g in gold.items():
        p = pred.get(k, set())
        tp, npred, ngold = tp + len(p & g), npred + len(p), ngold + len(g)
    return _prf_dict(tp, npred, ngold)


def _conll_sentences(path: Path, ndocs: int):
    """The gold-token sentences of the first ``ndocs`` documents, read by nerbatch's CoNLL reader
    (as ``nerbatch tag test.txt`` reads them: -DOCSTART- documents give the context)."""
    from nerbatch.io import ReadOptions, read

    seen: list[str] = []
    for sent in read(str(path), "conll", ReadOptions()):
        if sent.doc_id not in seen[-1:]:
            seen.append(sent.doc_id)
        if len(seen) > ndocs:
            return
        if sent.tokens:
            yield sent


def entity_scores_on_raw(tagger, docs: list[GoldDocument], conll_path: Path, workdir: Path) -> dict:
    """Entity P/R/F1 by exact ``(type, char_start, char_end)`` of one model on raw text and on gold tokens.

    Gold entities: the CoNLL gold tags (IOB1, chunked as conlleval does) on the gold tokens'
    character spans in the detokenised text. ``gold_tokens``: the model on the gold tokens of the
    CoNLL file (document context from -DOCSTART-), its entities mapped to character spans through
    the detokeniser's spans. ``lines``/``paragraphs`` (:data:`RAW_INPUTS`): the detokenised text of
    each document written to a JSONL file, one record a document with its ``doc_id`` (so the
    sentences of a document give each other context, as the gold tokens do), read back by nerbatch's
    JSONL reader, tagged, and the ``entities`` the JSONL writer would write (``char_start``,
    ``char_end`` into the record's ``text``) compared with the gold ones. A token or sentence
    boundary that moves an entity's edge counts as a false positive and a miss.
    """
    from nerbatch.io import read
    from nerbatch.io.jsonl import entities_json

    golds = [s for doc in docs for s in doc.sentences]
    words = sum(len(s.tokens) for s in golds)
    detok = [[detokenize(s.tokens, s.pos) for s in doc.sentences] for doc in docs]

    # warm-up (weights, first-call allocations), then the model on the gold tokens
    list(tagger.tag_sentences(s for _, s in zip(range(64), _conll_sentences(conll_path, len(docs)))))
    tagged, secs, fwd = _tag_timed(tagger, _conll_sentences(conll_path, len(docs)))
    if [s.tokens for s in tagged] != [s.tokens for s in golds]:
        raise AssertionError("nerbatch's CoNLL reader and detokenize.read_conll disagree on the sentences")
    by_doc, k = [], 0
    for doc in docs:  # the reader's documents must be the detokeniser's (the same context)
        sents = tagged[k : k + len(doc.sentences)]
        if len({s.doc_id for s in sents}) != 1:
            raise AssertionError("nerbatch's CoNLL reader and detokenize.read_conll disagree on the documents")
        by_doc.append(sents)
        k += len(doc.sentences)
    if len({sents[0].doc_id for sents in by_doc}) != len(docs):
        raise AssertionError("nerbatch's CoNLL reader and detokenize.read_conll disagree on the documents")
    out: dict = {
        "documents": len(docs),
        "sentences": len(golds),
        "words": words,
        "model_words_per_s": words / secs,
        "model_forward_seconds": fwd,
        "model_seconds": secs,
    }

    gold_tokens_scores = None
    for name, (layout, sep) in RAW_INPUTS.items():
        gold: dict[int, set] = {}
        pred_gold: dict[int, set] = {}
        edges: dict[int, tuple[set, set]] = {}
        path = workdir / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as fh:
            for d, (doc, sents) in enumerate(zip(docs, by_doc)):
                text, _, tok_spans = join_sentences(detok[d], sep)
                gold[d], pred_gold[d] = set(), set()
                for g, s, spans in zip(doc.sentences, sents, tok_spans):
                    gold[d] |= _char_entities(g.tags, spans)
                    pred_gold[d] |= _char_entities(s.pred, spans)
                fh.write(json.dumps({"doc_id": f"d{d}", "text": text}, ensure_ascii=False) + "\n")
        sentences = read(str(path), "jsonl", _read_options(tagger, layout))
        raw, secs, fwd = _tag_timed(tagger, sentences)
        pred: dict[int, set] = {d: set() for d in gold}
        raw_tokens = 0
        for sent in raw:
            d = int(sent.doc_id[1:])
            starts, ends = edges.setdefault(d, (set(), set()))
            starts.update(a for a, _ in sent.spans)
            ends.update(b for _, b in sent.spans)
            raw_tokens += len(sent.tokens)
            for ent in json.loads(entities_json(sent)):  # what `nerbatch tag -o out.jsonl` writes
                assert sent.text[ent["char_start"] : ent["char_end"]] == ent["text"]
                pred[d].add((ent["label"], ent["char_start"], ent["char_end"]))
        # gold entities the raw tokens cannot give at all: an edge that is no token edge
        unreachable = 0
        for d, g in gold.items():
            starts, ends = edges.get(d, (set(), set()))
            unreachable += sum(1 for _, a, b in g if a not in starts or b not in ends)
        gold_tokens_scores = _count(pred_gold, gold)  # the same for both inputs (offsets only shift)
        row = _count(pred, gold)
        row.update(
            layout=layout,
            f1_minus_gold_tokens=row["f1"] - gold_tokens_scores["f1"],
            target_points=TARGETS[name],
            sentences_tagged=len(raw),
            raw_tokens=raw_tokens,
            gold_entities_off_token_edges=unreachable,
            words_per_s_end_to_end=words / secs,  # reading + tokenising + splitting + the model
            model_forward_seconds=fwd,
        )
        row["target_met"] = -row["f1_minus_gold_tokens"] * 100 <= TARGETS[name]
        out[name] = row
    out["gold_tokens"] = gold_tokens_scores
    return out


def entity_markdown(ent: dict, speed: dict) -> str:
    g = ent["gold_tokens"]
    lines = [
        "| input (one model) | layout | sentences | entity P / R / F1 | F1 - gold tokens | target | end-to-end words/s |",
        "|---|---|---|---|---|---|---|",
        f"| gold CoNLL tokens | - | {ent['sentences']:,} | {pct(g['precision'])} / {pct(g['recall'])} / **{pct(g['f1'])}** | - | - | {ent['model_words_per_s']:,.0f} |",
    ]
    label = {"lines": "raw text, one sentence a line", "paragraphs": "raw text, each document one paragraph"}
    for name in RAW_INPUTS:
        r = ent[name]
        diff = 100 * r["f1_minus_gold_tokens"]
        ok = "met" if r["target_met"] else "**missed**"
        lines.append(
            f"| {label[name]} | `{r['layout']}` | {r['sentences_tagged']:,} | {pct(r['precision'])} / {pct(r['recall'])} / **{pct(r['f1'])}** "
            f"| {diff:+.2f} | within {r['target_points']} ({ok}) | {r['words_per_s_end_to_end']:,.0f} |"
        )
    lines.append("")
    lines.append(
        f"Speed: model {speed['model_words_per_s']:,.0f} words/s (gold tokens, fp32, not compiled); tokenising lines "
        f"{speed['tokenize_words_per_s']:,.0f} words/s = **{speed['tokenize_ratio']:.1f}x**, splitting + tokenising "
        f"paragraphs {speed['split_tokenize_words_per_s']:,.0f} words/s = **{speed['split_tokenize_ratio']:.1f}x** "
        f"(target {SPEED_TARGET:.0f}x: {'met' if speed['target_met'] else 'missed'})."
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------------------------- #




def version_of(package: str) -> str:
    if not package:
        return "-"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def markdown(rows: list[dict]) -> str:
    head = "| library | version | install (alone / added to nerbatch venv) | token P / R / F1 | tok F1 para | sent P / R | sent R punct | tokenise words/s | split words/s | split + tokenise words/s |"
    lines = [head, "|" + "|".join("---" for _ in range(10)) + "|"]
    for r in rows:
        alone, added = INSTALL.get(r["package"], ("?", "?"))
        tok = f"{pct(r.get('token_p'))} / {pct(r.get('token_r'))} / **{pct(r.get('token_f1'))}**" if "token_f1" in r else "–"
        sent = f"{pct(r.get('sent_p'))} / {pct(r.get('sent_r'))}" if "sent_p" in r else "–"
        tws = f"{r['tokenize_words_per_s']:,.0f}" if "tokenize_words_per_s" in r else "–"
        sws = f"{r['split_words_per_s']:,.0f}" if "split_words_per_s" in r else "–"
        stws = f"{r['split_tokenize_words_per_s']:,.0f}" if "split_tokenize_words_per_s" in r else "–"
        lines.append(
            f"| {r['name']} | {r['version']} | {alone} / {added} | {tok} | {pct(r.get('para_token_f1'))} | {sent} | {pct(r.get('sent_r_punct'))} | {tws} | {sws} | {stws} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with CoNLL-2003 test.txt")
    ap.add_argument("--split", default="test", help="test, valid or train")
    ap.add_argument("--candidates", action="store_true", help="also measure every candidate library that imports")
    ap.add_argument("--extra-site", action="append", default=[], help="extra folder for candidate packages (appended to sys.path)")
    ap.add_argument("--repeat", type=int, default=3, help="timing runs (the best is kept)")
    ap.add_argument("--output", type=Path, default=RESULTS)
    ap.add_argument("--model", default=None, help="model folder: also its entity F1 on raw text vs gold tokens, and its words/s")
    ap.add_argument("--device", default="auto", help="device for --model (auto, cpu, cuda)")
    ap.add_argument("--limit-docs", type=int, default=None, metavar="N", help="the first N documents only (a quick check)")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]  # other work on the machine lowers words/s
    for site in args.extra_site:
        sys.path.append(site)  # appended: the venv's own packages (numpy, ...) stay first

    path = args.data / f"{args.split}.txt"
    docs = read_conll(path)
    if args.limit_docs is not None:
        docs = docs[: args.limit_docs]
    bench = build(docs)
    print(f"{path}: {len(docs)} documents, {len(bench.sentences)} sentences, {bench.words} words", file=sys.stderr)

    makers = [cand_nerbatch, cand_whitespace] + (CANDIDATES if args.candidates else [])
    rows = []
    for make in makers:
        try:
            cand = make()
        except ImportError as exc:
            print(f"skipped {make.__name__}: {exc}", file=sys.stderr)
            continue
        t0 = time.perf_counter()
        row = evaluate(cand, bench, args.repeat)
        row["package"], row["version"] = cand.package, version_of(cand.package)
        rows.append(row)
        print(f"  {cand.name}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    entity = speed = None
    if args.model:
        import tempfile

        t0 = time.perf_counter()
        tagger = make_tagger(args.model, args.device)
        with tempfile.TemporaryDirectory(prefix="raw_text_bench.") as tmp:
            entity = entity_scores_on_raw(tagger, docs, path, Path(tmp))
        entity.update(model=args.model, precision="fp32", compile=False, device=args.device, context=tagger.context,
                      max_length=tagger.max_length)
        ours = next(r for r in rows if r["name"] == "nerbatch.core.tokenize")
        model_rate = entity["model_words_per_s"]
        speed = {
            "model_words_per_s": model_rate,
            "tokenize_words_per_s": ours["tokenize_words_per_s"],
            "split_words_per_s": ours["split_words_per_s"],
            "split_tokenize_words_per_s": ours["split_tokenize_words_per_s"],
            "tokenize_ratio": ours["tokenize_words_per_s"] / model_rate,
            "split_tokenize_ratio": ours["split_tokenize_words_per_s"] / model_rate,
        }
        speed["target_met"] = min(speed["tokenize_ratio"], speed["split_tokenize_ratio"]) >= SPEED_TARGET
        print(f"  model {args.model}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    result = {
        "data": str(path),
        "documents": len(docs),
        "sentences": len(bench.sentences),
        "words": bench.words,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load_start,
        "load_average_end": os.getloadavg()[0],
        "rows": rows,
    }
    if entity is not None:
        result["entity"] = entity
        result["speed"] = speed
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"CoNLL-2003 {args.split}, {bench.words} words; {result['cpu']}, {result['cores']} cores, "
        f"Python {result['python']}, load average {result['load_average']:.1f} at the start, "
        f"{result['load_average_end']:.1f} at the end\n"
    )
    print(markdown(rows))
    if entity is not None:
        print(f"\nModel {args.model} (fp32, not compiled, document context {'on' if entity['context'] else 'off'}):\n")
        print(entity_markdown(entity, speed))
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
