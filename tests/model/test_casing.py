"""Casing for uncased encoders (nerbatch.model.casing): word-shape ids as token types, the same in training
and tagging, in every back-end; a cased encoder gets none."""

from __future__ import annotations

import json
import shutil
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbatch.core.record import Sentence
from nerbatch.errors import ModelError
from nerbatch.io import ReadOptions, read
from nerbatch.model import casing
from nerbatch.model.casing import CAPITALISED, MIXED, NONE, UPPER, word_shape
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import LABELS, SAMPLE, build_tiny_model


@pytest.mark.parametrize(
    "word, shape",
    [("apple", NONE), ("Apple", CAPITALISED), ("APPLE", UPPER), ("iPhone", MIXED), ("McDonald", MIXED), ("A", CAPITALISED),
     ("U.S.", UPPER), ("1996", NONE), (",", NONE), ("Zürich", CAPITALISED), ("東京", NONE), ("O'Neil", MIXED), ("", NONE),
     ("Jean-Luc", MIXED), ("ÉCOLE", UPPER)],
)
def test_word_shapes(word, shape):
    assert word_shape(word) == shape


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.text(max_size=6), st.lists(st.integers(0, 2**20), max_size=4)), max_size=6))
def test_marked_ids_split_back_into_ids_and_shapes(pairs):
    words = [w for w, _ in pairs]
    pieces = [p for _, p in pairs]
    marked = casing.mark([pieces], [words])[0]
    for p, m, w in zip(pieces, marked, words):
        if not p:
            assert m == []
            continue
        ids, types = casing.split(m)
        assert ids.tolist() == p
        assert set(types.tolist()) == {word_shape(w)}


@pytest.fixture(scope="module")
def shaped_model(tmp_path_factory):
    """A tiny random NER model trained-with-casing style: 4 token types, each row distinct, so the
    shape of a word changes its prediction."""
    import torch
    from transformers import BertForTokenClassification

    folder = build_tiny_model(tmp_path_factory.mktemp("shaped") / "model")
    net = BertForTokenClassification.from_pretrained(folder)
    casing.widen_token_types(net)
    torch.manual_seed(1)
    with torch.no_grad():
        net.bert.embeddings.token_type_embeddings.weight[1:] = torch.randn(3, net.config.hidden_size) * 3
    net.save_pretrained(folder)
    with open(f"{folder}/nerbatch.json", "w") as fh:
        json.dump({"max_length": 64, "context": True, "scheme": "IOB2", "casing": "shape"}, fh)
    return folder


def _probs(tagger: Tagger, words: list[str]):
    import numpy as np

    (block,) = tagger.prepare([Sentence(tokens=words, path="<t>", line=1)])
    batch = tagger.model_inputs(block.rows, np.arange(len(block.rows)))
    return tagger.predict_inputs(batch)[np.argsort(batch.words)]  # one row per word, in word order


def test_the_shape_reaches_the_model(shaped_model):
    import numpy as np

    t = Tagger(shaped_model, TaggerOptions(device="cpu", compile=False))
    assert t.settings.casing == "shape"
    lower, upper = _probs(t, ["turku", "is", "nice"]), _probs(t, ["Turku", "is", "nice"])
    assert not np.allclose(lower[0], upper[0], atol=1e-4)  # the first word's shape changed its prediction
    # the same ids reach the model either way: only the token type differs
    (a,), (b,) = t.prepare([Sentence(tokens=["turku"], path="<t>", line=1)]), t.prepare([Sentence(tokens=["Turku"], path="<t>", line=1)])
    specials = t.backend.specials
    ids_a, types_a = casing.split(a.rows.row_ids(0, specials))
    ids_b, types_b = casing.split(b.rows.row_ids(0, specials))
    assert ids_a.tolist() == ids_b.tolist()
    assert set(types_a.tolist()) == {NONE} and types_b.tolist()[1:-1] == [CAPITALISED] * (len(ids_b) - 2)
    assert types_b[0] == types_b[-1] == NONE  # [CLS] and [SEP]


def _tag_sample(model: str, **options) -> list[Sentence]:
    t = Tagger(model, TaggerOptions(device="cpu", **options))
    return list(t.tag_sentences(read(str(SAMPLE / "test.conll"))))


def test_eager_compiled_and_int8_give_the_same_tags(shaped_model, tmp_path, monkeypatch):
    from nerbatch.tagging.compiled import compiler_available

    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(tmp_path / "cache"))
    eager = _tag_sample(shaped_model, compile=False, precision="fp32")
    assert all(len(s.pred) == len(s.tokens) for s in eager)
    if compiler_available():
        compiled = _tag_sample(shaped_model, compile=True, precision="fp32")
        assert [s.pred for s in compiled] == [s.pred for s in eager]
        again = Tagger(shaped_model, TaggerOptions(device="cpu", compile=True, precision="fp32"))
        assert [s.pred for s in again.tag_sentences(read(str(SAMPLE / "test.conll")))] == [s.pred for s in eager]
        assert again.compiled  # from the cache entry, built with the token type input
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return
    int8 = _tag_sample(shaped_model, precision="int8")
    a = [t for s in eager for t in s.pred]
    b = [t for s in int8 for t in s.pred]
    assert len(a) == len(b) and sum(x == y for x, y in zip(a, b)) / len(a) > 0.9


def test_training_features_carry_the_same_ids_as_tagging(tmp_path, tiny_encoder):
    """The casing ids of `train`'s features equal those the tagger builds for the same sentences."""
    from transformers import AutoTokenizer

    from nerbatch.training.data import Features, encode

    data = SAMPLE / "dev.conll"
    tokenizer = AutoTokenizer.from_pretrained(tiny_encoder)
    label2id = {lab: i for i, lab in enumerate(LABELS)}
    feats = list(encode([str(data)], Features(tokenizer, label2id, max_length=64, context=True, shapes=True), options=ReadOptions()))
    assert any(any(t for t in f["token_type_ids"]) for f in feats)
    model = tmp_path / "model"
    shutil.copytree(build_tiny_model(tmp_path / "tagmodel", max_positions=64), model)
    casing_model(model)
    t = Tagger(str(model), TaggerOptions(device="cpu", compile=False))
    rows = [casing.split(b.rows.row_ids(r, t.backend.specials)) for b in t.prepare(list(read(str(data)))) for r in range(len(b.rows))]
    assert [r[0].tolist() for r in rows] == [f["input_ids"] for f in feats]
    assert [r[1].tolist() for r in rows] == [f["token_type_ids"] for f in feats]


def casing_model(folder) -> None:
    from transformers import BertForTokenClassification

    net = BertForTokenClassification.from_pretrained(str(folder))
    casing.widen_token_types(net)
    net.save_pretrained(str(folder))
    (folder / "nerbatch.json").write_text(json.dumps({"max_length": 64, "context": True, "casing": "shape"}))


def _cased_encoder(folder):
    """The tiny encoder with a cased tokenizer (do_lower_case off)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True)
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), do_lower_case=False, model_max_length=128)
    tokenizer.save_pretrained(folder)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return str(folder)


def test_a_cased_encoder_gets_no_casing_ids(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from nerbatch.training.train import TrainOptions, train

    enc = _cased_encoder(tmp_path / "cased")
    tok = AutoTokenizer.from_pretrained(enc)
    assert not casing.lowercases(tok)
    assert casing.resolve("auto", tok, AutoModel.from_pretrained(enc), enc) == "none"
    out = tmp_path / "m"
    train(TrainOptions(train=[str(SAMPLE / "dev.conll")], output_dir=str(out), base_model=enc, epochs=1, max_length=64, quiet=True))
    saved = json.loads((out / "nerbatch.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert saved["casing"] == "none" and config["type_vocab_size"] == 2
    assert Tagger(str(out)).settings.casing == "none"


def test_an_uncased_encoder_trains_with_casing_and_tags_with_it(tmp_path, tiny_encoder):
    from nerbatch.training.train import TrainOptions, train

    out = tmp_path / "m"
    train(TrainOptions(train=[str(SAMPLE / "dev.conll")], output_dir=str(out), base_model=tiny_encoder, epochs=1, max_length=64, quiet=True))
    saved = json.loads((out / "nerbatch.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert saved["casing"] == "shape" and config["type_vocab_size"] == casing.SHAPES
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["casing"] == "shape"
    tagged = _tag_sample(str(out), compile=False)
    assert all(len(s.pred) == len(s.tokens) for s in tagged)
    # --casing none: the plain recipe, no widened embedding
    plain = tmp_path / "plain"
    train(TrainOptions(train=[str(SAMPLE / "dev.conll")], output_dir=str(plain), base_model=tiny_encoder, epochs=1, max_length=64,
                       casing="none", quiet=True))
    assert json.loads((plain / "config.json").read_text())["type_vocab_size"] == 2


def test_settings_refuse_an_unknown_casing_and_a_narrow_type_embedding(tmp_path, tiny_model):
    folder = tmp_path / "m"
    shutil.copytree(tiny_model, folder)
    (folder / "nerbatch.json").write_text(json.dumps({"casing": "truecase"}))
    with pytest.raises(ModelError, match="casing 'truecase'"):
        Tagger(str(folder))
    (folder / "nerbatch.json").write_text(json.dumps({"casing": "shape"}))  # but config.json has 2 types
    t = Tagger(str(folder), TaggerOptions(device="cpu", compile=False))
    with pytest.raises(ModelError, match="type_vocab_size 2"):
        t.load()
