"""Shared fixtures: a tiny random BERT with a WordPiece tokenizer, built at test time (no download)."""

from __future__ import annotations

import os
import string
import tempfile
from pathlib import Path

import pytest

# The compiled-model path (nerbatch.tagging.compiled) builds a package per model with a C++ compiler, about
# 10 s even for the tiny models here; most tests build a fresh model, so it is off by default in the
# suite and tests/tagging/test_compiled*.py turn it on. Quantized/compiled caches go to a throw-away folder.
os.environ.setdefault("NERBATCH_COMPILE", "0")
os.environ.setdefault("NERBATCH_PRECISION_RATES", '{"fp32": 1}')  # auto precision = fp32, whatever this CPU measures
# `train`'s dev F1 per precision builds an int8 copy of every trained model (about 10 s); tests/test_precision.py turns it on
os.environ.setdefault("NERBATCH_PRECISION_CHECK", "0")
os.environ.setdefault("NERBATCH_CACHE_DIR", tempfile.mkdtemp(prefix="nerbatch-test-cache-"))

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "sample_data"
CONLL2003 = ROOT.parent / "shared" / "data" / "conll2003"
LABELS = ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def build_tiny_model(folder: Path, *, max_positions: int = 64, labels: list[str] | None = LABELS, seed: int = 0) -> str:
    """Save a 2-layer, 32-wide random BERT for token classification and its fast tokenizer."""
    import torch
    from transformers import BertConfig, BertForTokenClassification, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    words = ["the", "is", "in", "of", "and", "city", "finland", "turku", "oldest", "a", "to"]
    chars = list(string.ascii_lowercase + string.digits + string.punctuation) + ["é", "ü", "ø", "å"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=max_positions)  # (transformers 5 ignores vocab_file=)
    tokenizer.save_pretrained(folder)
    kwargs = {}
    if labels is not None:
        kwargs = {"num_labels": len(labels), "id2label": dict(enumerate(labels)), "label2id": {lab: i for i, lab in enumerate(labels)}}
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=max_positions,
        **kwargs,
    )
    torch.manual_seed(seed)
    if labels is None:  # an encoder without a head, like the MiniLM base model
        BertModel(config).save_pretrained(folder)
    else:
        BertForTokenClassification(config).save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """A random tiny NER model whose window is 64 subwords (so long sentences get windowed)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def context_model(tiny_model, tmp_path_factory) -> str:
    """The tiny model, trained (so to speak) with document context in 64-subword windows."""
    import json
    import shutil

    folder = tmp_path_factory.mktemp("ctx") / "model"
    shutil.copytree(tiny_model, folder)
    (folder / "nerbatch.json").write_text(json.dumps({"context": True, "max_length": 64}), encoding="utf-8")
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A tiny random encoder without NER labels: a base model for `train`."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-enc") / "model", max_positions=128, labels=None)


@pytest.fixture(scope="session")
def tagger(tiny_model):
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    return Tagger(tiny_model, TaggerOptions(device="cpu"))


def stopping_tagger(model: str, options, stop: int):
    """A :class:`~nerbatch.tagging.tagger.Tagger` interrupted (as by Ctrl-C) after yielding ``stop`` sentences."""
    from nerbatch.tagging.tagger import Tagger

    class StopsAfter(Tagger):
        def tag_sentences(self, sentences, skip=0, block=None):
            for i, sent in enumerate(super().tag_sentences(sentences, skip, block)):
                if i == stop:
                    raise KeyboardInterrupt
                yield sent

    return StopsAfter(model, options)
