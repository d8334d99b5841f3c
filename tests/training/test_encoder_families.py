"""Encoder families beyond BERT: tiny random RoBERTa, XLM-R, DeBERTa-v2, DistilBERT, ELECTRA and
ModernBERT models with real tokenizers (byte-level BPE, Unigram, WordPiece) trained at test time on
the sample data with the `tokenizers` library (no download).

Each family trains with `nerbatch train`, tags with `nerbatch tag` keeping every word, and agrees
with a plain `transformers.pipeline` of its folder. The compiled (AOTInductor) and int8 (ONNX)
back-ends are built for two families only, to keep the file short: ModernBERT (byte-level BPE, whose
words need their leading space) and DeBERTa-v2 (Unigram, relative attention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.io import read
from nerbatch.tagging.align import Specials, word_pieces
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE

FAMILIES = ["roberta", "xlm-roberta", "deberta-v2", "distilbert", "electra", "modernbert"]
BYTE_LEVEL = ["roberta", "modernbert"]
WIDTH = 128  # subwords per window (and the models' positions)
LONG = 300  # words of one sentence longer than a window


def _corpus() -> list[str]:
    return [" ".join(s.tokens) for name in ("train.conll", "dev.conll", "test.conll") for s in read(str(SAMPLE / name)) if s.tokens]


def _tokenizer(kind: str, specials: list[str], unk: str, lowercase: bool = False):
    """A `tokenizers` tokenizer of ``kind`` (bpe: byte-level BPE, unigram, wordpiece) trained on the sample data."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # as the hub's RoBERTa and ModernBERT
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    elif kind == "unigram":
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=1000, special_tokens=specials, unk_token=unk, show_progress=False)
    else:
        tok = Tokenizer(models.WordPiece(unk_token=unk))
        tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=1000, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    return tok


def build_encoder(family: str, folder: Path) -> str:
    """Save a tiny random encoder of ``family`` (hidden 32, 2 layers) with its tokenizer, as the hub lays them out."""
    import torch
    import transformers as tf
    from tokenizers import processors

    folder.mkdir(parents=True, exist_ok=True)
    bert_specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    xlm_specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    if family == "roberta":
        model = json.loads(_tokenizer("bpe", xlm_specials, "<unk>").to_str())["model"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        tokenizer = tf.RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=WIDTH)
    elif family == "modernbert":  # the hub's ModernBERT: a plain tokenizer.json, [CLS] ... [SEP]
        tok = _tokenizer("bpe", bert_specials, "[UNK]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
            special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")],
        )
        tokenizer = tf.PreTrainedTokenizerFast(tokenizer_object=tok, cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                               unk_token="[UNK]", mask_token="[MASK]", model_max_length=WIDTH)
    elif family in ("xlm-roberta", "deberta-v2"):
        specials, unk = (xlm_specials, "<unk>") if family == "xlm-roberta" else (bert_specials, "[UNK]")
        vocab = [tuple(v) for v in json.loads(_tokenizer("unigram", specials, unk).to_str())["model"]["vocab"]]
        cls = tf.XLMRobertaTokenizer if family == "xlm-roberta" else tf.DebertaV2Tokenizer
        tokenizer = cls(vocab=vocab, model_max_length=WIDTH)
    else:  # DistilBERT uncased, ELECTRA cased: WordPiece
        lower = family == "distilbert"
        vocab = _tokenizer("wordpiece", bert_specials, "[UNK]", lowercase=lower).get_vocab()
        tokenizer = tf.BertTokenizer(vocab=vocab, do_lower_case=lower, model_max_length=WIDTH)
    tokenizer.save_pretrained(folder)
    sizes = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    common = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family in ("roberta", "xlm-roberta"):  # positions start after the padding index
        config = tf.AutoConfig.for_model(family, max_position_embeddings=WIDTH + 2, **sizes, **common)
    elif family == "distilbert":
        config = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=WIDTH, **common)
    elif family == "modernbert":
        ids = {"cls_token_id": tokenizer.cls_token_id, "sep_token_id": tokenizer.sep_token_id,
               "bos_token_id": tokenizer.cls_token_id, "eos_token_id": tokenizer.sep_token_id}
        config = tf.ModernBertConfig(max_position_embeddings=WIDTH, **ids, **sizes, **common)
    else:  # deberta-v2 (no token type embeddings, as the hub's), electra
        extra = {"embedding_size": 32} if family == "electra" else {}
        config = tf.AutoConfig.for_model(family, max_position_embeddings=WIDTH, **extra, **sizes, **common)
    torch.manual_seed(0)
    tf.AutoModel.from_config(config).save_pretrained(folder)
    return str(folder)


@dataclass
class Trained:
    base: str
    model: str
    stderr: str


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """``family(name)``: its base encoder and a model `nerbatch train` made from it, each built once.

    Trained with the default casing, which comes out as none for all six (tests assert it), so a
    plain pipeline sees the same inputs; without document context, as a pipeline tags one sentence."""
    made: dict[str, Trained] = {}

    def get(name: str) -> Trained:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            base = build_encoder(name, root / "base")
            out = root / "model"
            res = CliRunner().invoke(
                cli,
                ["train", "--train", str(SAMPLE / "train.conll"), "-o", str(out), "--base-model", base, "--epochs", "1",
                 "--lr", "5e-3", "--max-length", str(WIDTH), "--no-context", "--no-bf16", "--threads", "2"],
                catch_exceptions=False,
            )
            assert res.exit_code == 0, res.output
            made[name] = Trained(base, str(out), res.stderr)
        return made[name]

    return get


def sentences():
    """The sample test set and, first, one sentence longer than a window."""
    sents = [s for s in read(str(SAMPLE / "test.conll")) if s.tokens]
    first = sents[0]
    long = type(first)(tokens=(first.tokens * (LONG // len(first.tokens) + 1))[:LONG], path=first.path, line=first.line)
    return [long, *sents]


def tag(model: str, **options) -> tuple[Tagger, list]:
    t = Tagger(model, TaggerOptions(device="cpu", **options))
    out = list(t.tag_sentences(sentences()))
    assert [s.tokens for s in out] == [s.tokens for s in sentences()]  # every word kept, in order
    assert all(len(s.pred) == len(s.tokens) == len(s.scores) for s in out)
    assert all(p in t.labels for s in out for p in s.pred)
    return t, out


@pytest.mark.parametrize("name", BYTE_LEVEL)
def test_byte_level_words_get_their_leading_space(name, tmp_path):
    """RoBERTa/ModernBERT tokenizers leave add_prefix_space off: each word after the first must still
    get its leading-space piece (`Ġlives`), the pieces it has in running text, not `l iv es`."""
    from transformers import AutoTokenizer

    from nerbatch.tagging.compiled import RawTokenizer

    base = build_encoder(name, tmp_path / name)
    tok = AutoTokenizer.from_pretrained(base)
    words = "EU rejects German call to boycott British lamb .".split()
    pieces = word_pieces(tok, [words])[0]
    for word, ids in zip(words[1:], pieces[1:]):
        assert tok.convert_ids_to_tokens(ids)[0].startswith("Ġ"), (word, tok.convert_ids_to_tokens(ids))
    running = tok(" ".join(words), add_special_tokens=False)["input_ids"]
    assert [i for p in pieces for i in p] == running
    raw = RawTokenizer(str(Path(base) / "tokenizer.json"), tok.pad_token_id)  # the compiled and int8 back-ends' tokenizer
    assert word_pieces(raw, [words])[0] == pieces


@pytest.mark.parametrize("name", FAMILIES)
def test_remembered_word_pieces_are_the_running_text_pieces(name, tmp_path):
    """The tagger looks each word's pieces up once it has seen the word (PieceCache): for every
    tokenizer family (byte-level BPE, Unigram with its first-word marker, WordPiece) a word gets the
    pieces the whole sentence's encoding gives it, first in its sentence or not."""
    from transformers import AutoTokenizer

    from nerbatch.tagging.align import PieceCache

    tok = AutoTokenizer.from_pretrained(build_encoder(name, tmp_path / name))
    sents = [s.tokens for s in sentences()[1:60]]
    sents += [list(reversed(s)) for s in sents]  # the same words in other places, first ones later
    cache = PieceCache(lambda batch: word_pieces(tok, batch))
    for part in (sents[:40], sents[40:]):
        ids, counts = cache.flat(part)
        want = [p for sent in word_pieces(tok, part) for p in sent]
        assert counts.tolist() == [len(p) for p in want]
        assert ids.tolist() == [t for p in want for t in p]


@pytest.mark.parametrize("name", FAMILIES)
def test_family_trains_tags_every_word_and_agrees_with_a_pipeline(name, family, tmp_path):
    from transformers import pipeline

    trained = family(name)
    model = Path(trained.model)
    saved = json.loads((model / "nerbatch.json").read_text())
    assert saved["casing"] == "none" and saved["context"] is False  # nothing a plain pipeline lacks
    # `nerbatch tag` (eager): one tag on every word of the input
    src = tmp_path / "in.conll"
    src.write_text("\n\n".join("\n".join(s.tokens) for s in sentences()) + "\n", encoding="utf-8")
    out = tmp_path / "out.conll"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "-m", str(model), "--tag-column", "none", "--no-compile", "--precision", "fp32", "-q"])
    assert res.exit_code == 0, res.output
    lines = out.read_text(encoding="utf-8").splitlines()
    words = src.read_text(encoding="utf-8").splitlines()
    assert [x.rsplit(" ", 1)[0] for x in lines] == words
    assert all(x.rsplit(" ", 1)[1] in json.loads((model / "config.json").read_text())["label2id"] for x in lines if x)
    # the same words, ids, tags and scores as `pipeline("token-classification")` on the sentence's text
    t, tagged = tag(str(model), compile=False, precision="fp32", decode="argmax")
    nlp = pipeline("token-classification", model=str(model), ignore_labels=[], device="cpu")
    prefix = len(Specials.of(nlp.tokenizer).prefix)
    compared = 0
    for sent in tagged:
        text = " ".join(sent.tokens)
        ids = nlp.tokenizer(text)["input_ids"]
        if len(ids) > WIDTH:  # a pipeline truncates (or fails on) what nerbatch windows
            continue
        pieces = t.backend.word_pieces([sent.tokens])[0]
        assert [i for p in pieces for i in p] == ids[prefix : prefix + sum(map(len, pieces))], text
        by_index = {r["index"]: r for r in nlp(text)}
        at = prefix
        for word, pred, score, p in zip(sent.tokens, sent.pred, sent.scores, pieces):
            assert p, word
            assert by_index[at]["entity"] == pred, (word, text)
            assert abs(by_index[at]["score"] - score) < 1e-3, (word, text)
            at += len(p)
        compared += 1
    assert compared >= 50


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A cache folder of the test's own, with building compiled models on."""
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("NERBATCH_COMPILE", raising=False)
    return tmp_path / "cache"


@pytest.mark.parametrize("name", ["modernbert", "deberta-v2"])
def test_compiled_int8_and_onnx_keep_every_word_and_the_tags(name, family, cache):
    from nerbatch.tagging.compiled import compiler_available

    pytest.importorskip("onnxruntime", reason="int8 needs the 'int8' extra (onnxruntime)")
    model = family(name).model
    eager, ref = tag(model, compile=False, precision="fp32")
    if compiler_available():
        compiled, got = tag(model, compile=True, precision="fp32")
        assert compiled.backend.kind == "compiled"
        assert compiled.backend.word_pieces([s.tokens for s in ref]) == eager.backend.word_pieces([s.tokens for s in ref])
        assert [s.pred for s in got] == [s.pred for s in ref]
    onnx, fp32 = tag(model, precision="fp32", runtime="onnx")  # the fp32 ONNX Runtime copy: fused where it checks out
    assert onnx.backend.kind == "onnx"
    assert [s.pred for s in fp32] == [s.pred for s in ref]
    first, int8 = tag(model, precision="int8")
    again, cached = tag(model, precision="int8")  # from the cache entry: its own tokenizer.json, no transformers
    assert first.backend.kind == again.backend.kind == "int8"
    assert again.backend.word_pieces([s.tokens for s in ref]) == eager.backend.word_pieces([s.tokens for s in ref])
    assert [s.pred for s in cached] == [s.pred for s in int8]
    a = [p for s in ref for p in s.pred]
    b = [p for s in int8 for p in s.pred]
    assert sum(x == y for x, y in zip(a, b)) / len(a) > 0.9


def test_an_uncased_encoder_without_token_types_says_it_trains_without_case(family):
    """DistilBERT has no token type embeddings to carry word shapes: training says so and records it."""
    trained = family("distilbert")
    assert "no token type embeddings to carry word case" in trained.stderr
    assert "lowercases:" not in trained.stderr
    metrics = json.loads((Path(trained.model) / "metrics.json").read_text())
    assert metrics["settings"]["casing"] == "none" and "no token type embeddings" in metrics["casing_note"]
    assert "no token type embeddings" in (Path(trained.model) / "README.md").read_text()
    for cased in ("electra", "roberta"):  # a cased encoder needs no casing and hears nothing about it
        assert "casing" not in family(cased).stderr and "lowercases" not in family(cased).stderr


def test_casing_shape_on_a_cased_encoder_says_what_is_true(family, tmp_path):
    """--casing shape on RoBERTa (cased, byte-level BPE) works, and does not claim its tokenizer lowercases."""
    base = family("roberta").base
    out = tmp_path / "m"
    res = CliRunner().invoke(
        cli,
        ["train", "--train", str(SAMPLE / "dev.conll"), "-o", str(out), "--base-model", base, "--epochs", "1", "--every", "4",
         "--max-length", str(WIDTH), "--casing", "shape", "--no-bf16", "--threads", "2"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "lowercases" not in res.stderr
    assert "word-shape ids (Capitalised/UPPER/mixed) go in as token types (--casing shape)" in res.stderr
    assert json.loads((out / "nerbatch.json").read_text())["casing"] == "shape"
    t, _ = tag(str(out), compile=False, precision="fp32")
    assert t.settings.casing == "shape"
