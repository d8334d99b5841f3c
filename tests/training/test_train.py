"""`nerbatch train` on sample data with a tiny random encoder: a plain transformers folder comes out."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.errors import InputError
from nerbatch.io import ReadOptions, read
from nerbatch.training.train import TrainOptions, collect_labels, train

from ..conftest import SAMPLE


@pytest.fixture(scope="module")
def trained(tiny_encoder, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "model"
    res = CliRunner().invoke(
        cli,
        ["train", "--train", str(SAMPLE / "train.conll"), "--dev", str(SAMPLE / "dev.conll"), "-o", str(out),
         "--base-model", tiny_encoder, "--epochs", "2", "--lr", "5e-3", "--max-length", "64", "--every", "2", "-q"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    assert "f1" in res.stdout  # the per-epoch table
    return out


def test_output_is_a_plain_transformers_model(trained):
    from transformers import pipeline

    config = json.loads((trained / "config.json").read_text())
    labels = set(config["id2label"].values())
    assert labels == {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}
    assert config["label2id"]["O"] == 0
    nlp = pipeline("token-classification", model=str(trained))
    out = nlp("Turku is the oldest city in Finland")
    assert all(item["entity"] in labels for item in out)


def test_metrics_and_settings_are_saved(trained):
    metrics = json.loads((trained / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 2
    for row in metrics["epochs"]:
        assert 0.0 <= row["f1"] <= 1.0 and row["seconds"] > 0
    assert metrics["settings"]["every"] == 2
    saved = json.loads((trained / "nerbatch.json").read_text())
    saved.pop("calibration", None)  # the entity-score map when the model predicts entities on --dev (tests/tagging/test_calibration.py)
    assert saved == {
        "nerbatch_version": saved["nerbatch_version"], "max_length": 64, "context": True, "scheme": "IOB2",
        "casing": "shape",  # the tiny tokenizer lowercases, as the default MiniLM does
    }
    assert "Dev scores per epoch" in (trained / "README.md").read_text()


def test_trained_model_tags_with_its_training_context(trained):
    from nerbatch.tagging.tagger import Tagger

    tagger = Tagger(str(trained))
    assert tagger.context is True and tagger.max_length == 64
    sents = list(tagger.tag_sentences(read(str(SAMPLE / "dev.conll"))))
    assert all(len(s.pred) == len(s.tokens) for s in sents)


def test_iob1_training_data_is_converted():
    labels = collect_labels([str(SAMPLE / "train_iob1.conll")], None, ReadOptions())
    assert labels[0] == "O" and all(lab[:2] in ("B-", "I-") for lab in labels[1:])
    assert any(lab.startswith("B-") for lab in labels)


def test_unknown_tag_in_training_data(tmp_path, tiny_encoder):
    bad = tmp_path / "bad.conll"
    bad.write_text("EU B-ORG\nrejects O\n\nPeter PERSON\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad.conll:4: unknown tag 'PERSON'"):
        train(TrainOptions(train=[str(bad)], output_dir=str(tmp_path / "m"), base_model=tiny_encoder))
    res = CliRunner().invoke(cli, ["train", "--train", str(bad), "-o", str(tmp_path / "m2"), "--base-model", tiny_encoder])
    assert res.exit_code == 2 and "bad.conll:4: unknown tag 'PERSON'" in res.stderr


def test_dev_tag_not_seen_in_training(tmp_path, tiny_encoder):
    tr = tmp_path / "tr.conll"
    tr.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    dev = tmp_path / "dev.conll"
    dev.write_text("EU B-ORG\n\nBonn B-LOC\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"dev.conll:3: tag 'B-LOC' does not occur in the training data"):
        train(TrainOptions(train=[str(tr)], dev=str(dev), output_dir=str(tmp_path / "m"), base_model=tiny_encoder, epochs=1))


def test_length_grouped_batches_cover_every_example_once_with_little_padding():
    import random

    from nerbatch.training.sampling import length_grouped_batches

    rng = random.Random(1)
    lengths = [rng.choice([3, 5, 8, 12, 20, 35, 60, 100]) + rng.randrange(3) for _ in range(1003)]
    epoch0 = length_grouped_batches(lengths, 32, pool=8, seed=42)
    epoch1 = length_grouped_batches(lengths, 32, pool=8, seed=43)
    for batches in (epoch0, epoch1):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))  # every example once per epoch
        assert all(len(b) == 32 for b in batches[:-1]) and 0 < len(batches[-1]) <= 32  # only the last may be short
    assert epoch0 != epoch1  # a new order every epoch
    assert epoch0 == length_grouped_batches(lengths, 32, pool=8, seed=42)  # deterministic for a seed

    def padded(batches):
        return sum(max(lengths[i] for i in b) * len(b) for b in batches)

    shuffled = list(range(len(lengths)))
    random.Random(0).shuffle(shuffled)
    plain = [shuffled[i : i + 32] for i in range(0, len(shuffled), 32)]
    assert padded(epoch0) < 0.6 * padded(plain)  # most of the padding goes
    # batches are not ordered long-to-short: lengths of consecutive batches are mixed
    means = [sum(lengths[i] for i in b) / len(b) for b in epoch0[:-1]]
    ups = sum(b > a for a, b in zip(means, means[1:]))
    assert 0.25 < ups / (len(means) - 1) < 0.75
