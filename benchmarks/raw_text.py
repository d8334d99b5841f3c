"""Raw-text benchmark: how close tokenisation and sentence splitting of raw text come to CoNLL-2003.

    .venv/bin/python benchmarks/raw_text.py                 # nerbatch.tokenize + whitespace baseline
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
* **words/s**: gold words per second (best of ``--repeat``) of tokenising the sentence texts,
  and of splitting the paragraphs alone.

``entity_scores_on_raw`` (not run here) is the hook for the model's entity F1 on raw text versus
gold tokens, by exact character span and type. Results: ``benchmarks/results/raw_text.json`` and a
markdown table on stdout.
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

from detokenize import GoldDocument, GoldSentence, detokenize, join_sentences, read_conll  # noqa: E402

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
    from nerbatch import tokenize as nt

    return Candidate(
        "nerbatch.tokenize",
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
        tp = npred = ngold = 0
        for text, _, gold in bench.paragraphs:
            a, b, c = boundary_counts(cand.split_tokens(text), gold)
            tp, npred, ngold = tp + a, npred + b, ngold + c
        row["para_token_f1"] = prf(tp, npred, ngold)[2]
    return row


# --------------------------------------------------------------------------------------------- #
# Entity F1 on raw text (hook for the model: not run by main)
# --------------------------------------------------------------------------------------------- #


def _iob_chunks(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    from nerbatch.scoring import conll_chunks

    return conll_chunks(list(tags))


def _char_entities(tags: Sequence[str], spans: Spans) -> set[tuple[str, int, int]]:
    return {(label, spans[s][0], spans[e - 1][1]) for label, s, e in _iob_chunks(tags)}


def entity_scores_on_raw(
    tag: Callable[[list[list[str]]], list[list[str]]],
    docs: list[GoldDocument],
    layout: str = "line",
    batch: int = 256,
) -> dict:
    """Entity P/R/F1 by exact ``(type, char_start, char_end)`` of ``tag`` on raw text and on gold tokens.

    ``tag`` maps a batch of token lists to their IOB tags (e.g. a loaded nerbatch Tagger). The
    raw text is the detokenised CoNLL text: under ``layout="line"`` one sentence a line, under
    ``"paragraph"`` each document one paragraph, cut by ``nerbatch.tokenize.layout_units``. Gold
    entities come from the gold tags on the gold token spans of the same text, so a wrong token or
    sentence boundary that moves an entity's edge counts as both a false positive and a miss.
    ``gold_tokens`` is the same model on the gold tokens: the gap is what raw text costs.
    """
    from nerbatch.tokenize import layout_units

    units: list[tuple[str, list[tuple[list[str], Spans]], list[tuple[GoldSentence, Spans]]]] = []
    for doc in docs:
        detok = [detokenize(s.tokens, s.pos) for s in doc.sentences]
        if layout == "line":
            for sent, (text, spans) in zip(doc.sentences, detok):
                units.append((text, [], [(sent, spans)]))
        else:
            text, _, tok_spans = join_sentences(detok)
            units.append((text, [], list(zip(doc.sentences, tok_spans))))
    for text, pieces, _ in units:
        for sent in layout_units(text, "line" if layout == "line" else "paragraph"):
            pieces.append(([t for t, _, _ in sent], [(s, e) for _, s, e in sent]))

    def run(seqs: list[list[str]]) -> list[list[str]]:
        out: list[list[str]] = []
        for i in range(0, len(seqs), batch):
            out.extend(tag(seqs[i : i + batch]))
        return out

    raw_seqs = [toks for _, pieces, _ in units for toks, _ in pieces]
    gold_seqs = [s.tokens for _, _, golds in units for s, _ in golds]
    raw_tags, gold_tok_tags = iter(run(raw_seqs)), iter(run(gold_seqs))
    counts = {"raw_text": [0, 0, 0], "gold_tokens": [0, 0, 0]}
    for _, pieces, golds in units:
        gold = set()
        pred_raw = set()
        pred_gold = set()
        for sent, spans in golds:
            gold |= _char_entities(sent.tags, spans)
            pred_gold |= _char_entities(next(gold_tok_tags), spans)
        for _, spans in pieces:
            pred_raw |= _char_entities(next(raw_tags), spans)
        for key, pred in (("raw_text", pred_raw), ("gold_tokens", pred_gold)):
            c = counts[key]
            c[0] += len(pred & gold)
            c[1] += len(pred)
            c[2] += len(gold)
    out = {}
    for key, (tp, npred, ngold) in counts.items():
        p, r, f = prf(tp, npred, ngold)
        out[key] = {"precision": p, "recall": r, "f1": f, "predicted": npred, "gold": ngold}
    return out


# --------------------------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------------------------- #


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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
    head = "| library | version | install (alone / added to nerbatch venv) | token P / R / F1 | tok F1 para | sent P / R | sent R punct | tokenise words/s | split words/s |"
    lines = [head, "|" + "|".join("---" for _ in range(9)) + "|"]
    for r in rows:
        alone, added = INSTALL.get(r["package"], ("?", "?"))
        tok = f"{pct(r.get('token_p'))} / {pct(r.get('token_r'))} / **{pct(r.get('token_f1'))}**" if "token_f1" in r else "–"
        sent = f"{pct(r.get('sent_p'))} / {pct(r.get('sent_r'))}" if "sent_p" in r else "–"
        tws = f"{r['tokenize_words_per_s']:,.0f}" if "tokenize_words_per_s" in r else "–"
        sws = f"{r['split_words_per_s']:,.0f}" if "split_words_per_s" in r else "–"
        lines.append(
            f"| {r['name']} | {r['version']} | {alone} / {added} | {tok} | {pct(r.get('para_token_f1'))} | {sent} | {pct(r.get('sent_r_punct'))} | {tws} | {sws} |"
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
    args = ap.parse_args(argv)
    for site in args.extra_site:
        sys.path.append(site)  # appended: the venv's own packages (numpy, ...) stay first

    path = args.data / f"{args.split}.txt"
    docs = read_conll(path)
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

    result = {
        "data": str(path),
        "documents": len(docs),
        "sentences": len(bench.sentences),
        "words": bench.words,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": os.getloadavg()[0],  # other work on the machine lowers words/s
        "rows": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(
        f"CoNLL-2003 {args.split}, {bench.words} words; {result['cpu']}, {result['cores']} cores, "
        f"Python {result['python']}, load average {result['load_average']:.1f}\n"
    )
    print(markdown(rows))
    print(f"\nwrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
