"""Word case for uncased encoders: a word-shape id per subword, fed through ``token_type_ids``.

An uncased tokenizer (the default MiniLM) lowercases its input, so "apple" and "Apple" reach the
model as the same ids, and capitalisation is the strongest single cue for English NER. With casing
``"shape"`` every subword carries the shape of its word as its token type:

====  ==========================================================================
id    shape
====  ==========================================================================
0     no case information: lowercase, no cased letters (digits, punctuation, CJK),
      special tokens and padding
1     Capitalised (first cased letter upper, the rest lower; also one-letter "A")
2     UPPER (two or more cased letters, all upper)
3     mixed (anything else: "iPhone", "McDonald", "eBay")
====  ==========================================================================

Id 0 is what a plain ``transformers`` user feeds (``token_type_ids`` of zeros), so such a user's
input reads to the model as all-lowercase text, the input an uncased encoder sees anyway: the
model runs and loses only the case cue (the README gives the measured F1 of that).

The type vocabulary of the encoder grows to :data:`SHAPES` rows, each new row a copy of the
pretrained row 0, so training starts from the pretrained model's behaviour; the folder stays a
plain ``BertForTokenClassification`` (``config.type_vocab_size`` = 4) that transformers loads.

How the ids travel: the shape rides in the high bits of each subword id (:func:`mark`, ``id |
shape << SHIFT``) from tokenisation until the batch is built (:func:`split`), so the windowing and
document-context code of :mod:`nerbatch.tagging.align`, shared by training and tagging, moves a subword's
shape with it and cannot get the two out of step. Vocabularies are far below ``2**SHIFT`` ids.
Training (:func:`nerbatch.training.train.encode`) and tagging (:meth:`nerbatch.tagging.tagger.Tagger.prepare`) call
the same :func:`mark` and :func:`split`; ``nerbatch.json`` records ``"casing"``.
"""

from __future__ import annotations

from typing import Sequence

__all__ = ["CASINGS", "SHAPES", "SHIFT", "word_shape", "mark", "split", "lowercases", "resolve", "note", "widen_token_types"]

CASINGS = ("auto", "shape", "none")
SHAPES = 4
SHIFT = 24  # subword id bits; the shape sits above them
ID_MASK = (1 << SHIFT) - 1

NONE, CAPITALISED, UPPER, MIXED = range(SHAPES)


def word_shape(word: str) -> int:
    """The shape id of a word (see the module docstring); only cased letters count."""
    cased = [c for c in word if c.isupper() or c.islower()]
    if not cased:
        return NONE
    uppers = sum(1 for c in cased if c.isupper())
    if uppers == 0:
        return NONE
    if uppers == len(cased):
        return UPPER if len(cased) > 1 else CAPITALISED
    if uppers == 1 and cased[0].isupper():
        return CAPITALISED
    return MIXED


def mark(pieces: list[list[list[int]]], batch: Sequence[Sequence[str]]) -> list[list[list[int]]]:
    """Word pieces of each word of each sentence with the word's shape in the high bits of each id."""
    out = []
    for sent_pieces, words in zip(pieces, batch, strict=True):
        row = []
        for p, w in zip(sent_pieces, words, strict=True):
            s = word_shape(w) << SHIFT
            row.append([t | s for t in p] if s else p)
        out.append(row)
    return out


def split(codes):
    """``(ids, token_type_ids)`` of a numpy array (or list) of marked ids."""
    import numpy as np

    arr = np.asarray(codes, dtype=np.int64)
    return arr & ID_MASK, arr >> SHIFT


def lowercases(tokenizer) -> bool:
    """Whether the tokenizer maps "Apple" and "apple" (and "APPLE") to the same ids."""
    words = ["Apple", "apple", "APPLE"]
    enc = tokenizer([[w] for w in words], is_split_into_words=True, add_special_tokens=False)["input_ids"]
    return enc[0] == enc[1] == enc[2]


def resolve(casing: str, tokenizer, model, name: str) -> str:
    """``"shape"`` or ``"none"`` for a base encoder: ``auto`` is shape exactly when the tokenizer
    lowercases and the encoder has a token type embedding to widen."""
    from ..errors import ModelError

    if casing not in CASINGS:
        raise ModelError(f"unknown casing {casing!r}", hint=f"use one of {', '.join(CASINGS)}")
    if casing == "none":
        return "none"
    has_types = _token_type_embeddings(model) is not None
    if casing == "shape":
        if not has_types:
            raise ModelError(f"{name}: --casing shape needs an encoder with token type embeddings (BERT-style)",
                             hint="use --casing none")
        return "shape"
    return "shape" if has_types and lowercases(tokenizer) else "none"


def note(casing: str, chosen: str, tokenizer, model) -> str | None:
    """The training log's line on what ``casing`` (as asked) resolved to (``chosen``, from
    :func:`resolve`) means for this encoder; None when there is nothing to say (a cased encoder
    trained without shape ids, or ``--casing none`` asked for)."""
    lower = lowercases(tokenizer)
    if chosen == "shape":
        if lower:
            return "the encoder's tokenizer lowercases: word-shape ids (Capitalised/UPPER/mixed) go in as token types (--casing)"
        return "word-shape ids (Capitalised/UPPER/mixed) go in as token types (--casing shape), on top of the case the encoder's tokenizer keeps"
    if casing == "auto" and lower:
        return ("the encoder's tokenizer lowercases and the encoder has no token type embeddings to carry word case: "
                "the model is trained without capitalisation (a cased encoder would see it)")
    return None


def _token_type_embeddings(model):
    emb = getattr(getattr(model, "base_model", None), "embeddings", None)
    return getattr(emb, "token_type_embeddings", None)


def widen_token_types(model) -> None:
    """Grow the encoder's token type embedding to :data:`SHAPES` rows, each new row a copy of row 0."""
    import torch

    emb = model.base_model.embeddings
    old = emb.token_type_embeddings
    if old.num_embeddings >= SHAPES:
        return
    new = torch.nn.Embedding(SHAPES, old.embedding_dim, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight[0].expand(SHAPES, -1))
    emb.token_type_embeddings = new
    model.config.type_vocab_size = SHAPES
