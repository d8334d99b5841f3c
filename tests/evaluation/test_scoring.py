"""Tests for nerbatch.evaluation.scoring: conlleval-exact default mode and seqeval strict mode."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nerbatch.core.schemes import conll_chunks
from nerbatch.evaluation.scoring import Scorer, format_report, score

Sentence = tuple[list[str], list[str]]  # (gold, pred)

TYPES = ["PER", "LOC", "ORG", "MISC"]
# Tags that exercise conlleval's odd corners: E-/S-/[ ]/. prefixes, tags without
# a '-', types containing '-', the type "0" (false in Perl), an "O" with a type.
WEIRD_TAGS = [
    "O", "O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC",
    "S-LOC", "[-ORG", "]-ORG", ".-ORG", "[", "]", ".", "PER", "B", "I", "E", "X",
    "B-0", "I-0", "B-ORG-X", "I-ORG-X", "O-PER", "X-LOC",
]


# --------------------------------------------------------------------------- #
# deterministic corpus generator (no dependence on the random module's algorithms)
# --------------------------------------------------------------------------- #


class _Rng:
    """64-bit LCG: the same corpora on every Python version and platform."""

    def __init__(self, seed: int) -> None:
        self.state = (seed * 2654435761 + 12345) % 2**64

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % n

    def chance(self, percent: int) -> bool:
        return self.below(100) < percent

    def choice(self, items: Sequence[str]) -> str:
        return items[self.below(len(items))]


def _gold_sentence(rng: _Rng, style: str, length: int) -> list[str]:
    if style == "weird":
        return [rng.choice(WEIRD_TAGS) for _ in range(length)]
    if style == "mixed":
        return [
            "O" if rng.chance(50) else rng.choice("BIES") + "-" + rng.choice(TYPES)
            for _ in range(length)
        ]
    tags: list[str] = []
    prev_type = ""
    while len(tags) < length:
        if rng.chance(55):
            tags.append("O")
            prev_type = ""
            continue
        type_ = rng.choice(TYPES)
        span = 1 + rng.below(3)
        if style == "iob2":
            first = "B"
        else:  # iob1: B- only when the previous token is inside a chunk of the same type
            first = "B" if type_ == prev_type else "I"
        tags.append(f"{first}-{type_}")
        tags.extend(f"I-{type_}" for _ in range(span - 1))
        prev_type = type_
    return tags[:length]


def _corrupt(rng: _Rng, gold: list[str], style: str, percent: int) -> list[str]:
    pred = []
    for tag in gold:
        if not rng.chance(percent):
            pred.append(tag)
            continue
        kind = rng.below(4)
        if style == "weird":
            pred.append(rng.choice(WEIRD_TAGS))
        elif kind == 0:
            pred.append("O")
        elif kind == 1:
            pred.append(rng.choice("BI") + "-" + rng.choice(TYPES))
        elif kind == 2 and tag != "O":  # flip B <-> I, keep the type
            prefix, _, type_ = tag.partition("-")
            pred.append(("I" if prefix == "B" else "B") + "-" + type_)
        elif tag != "O":  # same prefix, other type
            prefix, _, type_ = tag.partition("-")
            pred.append(prefix + "-" + rng.choice(TYPES))
        else:
            pred.append(rng.choice("BI") + "-" + rng.choice(TYPES))
    return pred


def make_corpus(style: str, seed: int, sentences: int = 30) -> list[Sentence]:
    rng = _Rng(seed)
    corpus = []
    for _ in range(sentences):
        # some empty sentences in the weird style (two blank lines in the file)
        length = rng.below(12) if style == "weird" else 1 + rng.below(14)
        gold = _gold_sentence(rng, style, length)
        corpus.append((gold, _corrupt(rng, gold, style, 25)))
    return corpus


def conll_file_text(corpus: Sequence[Sentence]) -> str:
    """conlleval input: ``word gold pred`` per token, a blank line between sentences."""
    lines: list[str] = []
    for k, (gold, pred) in enumerate(corpus):
        if k:
            lines.append("")
        lines.extend(f"w{i} {g} {p}" for i, (g, p) in enumerate(zip(gold, pred, strict=True)))
    return "\n".join(lines) + "\n"


def score_corpus(corpus: Sequence[Sentence], strict: bool = False) -> dict:
    return score([g for g, _ in corpus], [p for _, p in corpus], strict=strict)


def parse_conlleval(output: str) -> dict:
    """Numbers from conlleval's stdout (percentages as printed)."""
    lines = output.splitlines()
    head = lines[0].split()
    parsed: dict = {
        "header": lines[0],
        "tokens": int(head[1]),
        "gold": int(head[4]),
        "found": int(head[7]),
        "correct": int(head[10].rstrip(".")),
        "per_type": {},
    }
    rest = lines[1:]
    if rest and rest[0].startswith("accuracy:"):
        parsed["summary"] = rest[0]
        f = rest[0].replace("%", "").replace(";", "").split()
        parsed["accuracy"], parsed["precision"] = float(f[1]), float(f[3])
        parsed["recall"], parsed["f1"] = float(f[5]), float(f[7])
        rest = rest[1:]
    for line in rest:
        name, _, numbers = line.partition(": precision:")
        f = numbers.replace("%", "").replace(";", "").split()
        parsed["per_type"][name.strip()] = {
            "precision": float(f[0]),
            "recall": float(f[2]),
            "f1": float(f[4]),
            "predicted": int(f[5]),
        }
    return parsed


def assert_matches_conlleval(result: dict, expected_output: str) -> None:
    exp = parse_conlleval(expected_output)
    report = format_report(result).splitlines()
    assert report[0] == exp["header"]
    o = result["overall"]
    assert (result["tokens"], o["support"], o["predicted"], o["correct"]) == (
        exp["tokens"], exp["gold"], exp["found"], exp["correct"],
    )
    if exp["tokens"]:
        assert report[1] == exp["summary"]  # identical down to the rounding
        assert abs(100 * result["accuracy"] - exp["accuracy"]) <= 0.01
        for key in ("precision", "recall", "f1"):
            assert abs(100 * o[key] - exp[key]) <= 0.01, key
    assert set(result["per_type"]) == set(exp["per_type"])
    for type_, row in exp["per_type"].items():
        ours = result["per_type"][type_]
        assert ours["predicted"] == row["predicted"], type_
        for key in ("precision", "recall", "f1"):
            assert abs(100 * ours[key] - row[key]) <= 0.01, (type_, key)


# --------------------------------------------------------------------------- #
# hand-worked chunking examples (conlleval rules)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("tags", "chunks"),
    [
        # IOB1: I- after O starts a chunk
        (["I-PER", "I-PER", "O", "I-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        (["O", "I-PER"], [("PER", 1, 2)]),
        # I-X after I-Y (or B-Y) starts a new chunk
        (["I-PER", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 2)]),
        (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 1), ("LOC", 1, 3)]),
        # B- adjacency
        (["I-PER", "B-PER"], [("PER", 0, 1), ("PER", 1, 2)]),
        (["B-PER", "B-PER", "I-PER"], [("PER", 0, 1), ("PER", 1, 3)]),
        (["B-PER", "I-PER", "I-PER", "O"], [("PER", 0, 3)]),
        # IOE: E- closes a chunk; conlleval does not know S- (it continues a chunk)
        (["I-PER", "E-PER", "E-PER"], [("PER", 0, 2), ("PER", 2, 3)]),
        (["S-PER", "S-PER"], [("PER", 0, 2)]),
        # bracket representation: '[' and ']' chunks have length 1, '.' never starts one
        (["[-NP", ".-NP", "]-NP"], [("NP", 0, 1), ("NP", 2, 3)]),
        # types may contain '-'; the type "0" is empty (Perl truthiness)
        (["B-ORG-X", "I-ORG-X"], [("ORG-X", 0, 2)]),
        (["B-0"], [("", 0, 1)]),
        # a tag without '-' is all prefix and has no type: no chunk after O ...
        (["PER", "O"], []),
        # ... but one (without type) after a typed tag
        (["B-LOC", "PER"], [("LOC", 0, 1), ("", 1, 2)]),
        ([], []),
        (["O", "O"], []),
    ],
)
def test_conll_chunks(tags: list[str], chunks: list[tuple[str, int, int]]) -> None:
    assert conll_chunks(tags) == chunks


def test_iob1_prediction_scores_like_iob2_gold_in_default_mode_only() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["I-PER", "I-PER", "O", "I-LOC"]]  # IOB1 spelling of the same chunks
    default = score(gold, pred)
    assert default["overall"]["correct"] == 2
    assert default["overall"]["f1"] == 1.0
    assert default["accuracy"] == pytest.approx(2 / 4)
    strict = score(gold, pred, strict=True)
    assert strict["mode"] == "strict"
    assert strict["overall"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0,
        "support": 2, "predicted": 0, "correct": 0,
    }
    assert strict["accuracy"] == pytest.approx(2 / 4)


def test_i_after_other_type_differs_between_modes() -> None:
    gold = [["B-LOC", "B-PER", "O"]]
    pred = [["B-LOC", "I-PER", "O"]]
    default = score(gold, pred)
    assert default["per_type"]["PER"]["correct"] == 1
    assert default["overall"]["correct"] == 2
    strict = score(gold, pred, strict=True)
    # IOB2 strict: I-PER after B-LOC is not the start of an entity
    assert strict["per_type"]["PER"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0, "correct": 0,
    }
    assert strict["per_type"]["LOC"]["correct"] == 1
    assert strict["overall"]["correct"] == 1


def test_b_adjacency_split_chunk_is_wrong() -> None:
    gold = [["B-PER", "I-PER", "I-PER"]]
    pred = [["B-PER", "B-PER", "I-PER"]]
    for strict in (False, True):
        r = score(gold, pred, strict=strict)
        assert (r["overall"]["support"], r["overall"]["predicted"], r["overall"]["correct"]) == (
            1, 2, 0,
        )


def test_per_type_numbers_hand_worked() -> None:
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-ORG", "O", "B-PER", "O"],
        ["B-LOC", "I-LOC", "O"],
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-ORG", "O"],  # PER right, LOC typed as ORG
        ["B-ORG", "O", "B-PER", "I-PER"],       # ORG right, PER too long
        ["B-LOC", "I-LOC", "B-MISC"],           # LOC right, spurious MISC
    ]
    r = score(gold, pred)
    assert r["mode"] == "conlleval"
    assert r["sentences"] == 3
    assert r["tokens"] == 12
    assert r["accuracy"] == pytest.approx(9 / 12)
    o = r["overall"]
    assert (o["support"], o["predicted"], o["correct"]) == (5, 6, 3)
    assert o["precision"] == pytest.approx(3 / 6)
    assert o["recall"] == pytest.approx(3 / 5)
    assert o["f1"] == pytest.approx(2 * 0.5 * 0.6 / 1.1)
    assert list(r["per_type"]) == ["LOC", "MISC", "ORG", "PER"]
    assert r["per_type"]["LOC"] == {
        "precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3),
        "support": 2, "predicted": 1, "correct": 1,
    }
    # a type seen only in predictions
    assert r["per_type"]["MISC"] == {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 1, "correct": 0,
    }
    assert r["per_type"]["ORG"] == {
        "precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
        "support": 1, "predicted": 2, "correct": 1,
    }
    assert r["per_type"]["PER"] == {
        "precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "predicted": 2, "correct": 1,
    }
    # valid IOB2 everywhere: strict mode gives the same numbers
    assert score(gold, pred, strict=True)["per_type"] == r["per_type"]


def test_type_only_in_gold_is_listed() -> None:
    r = score([["B-PER", "O"]], [["O", "O"]])
    assert r["per_type"] == {
        "PER": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0,
                "correct": 0},
    }


def test_chunks_do_not_cross_sentences() -> None:
    scorer = Scorer()
    scorer.add(["B-PER"], ["B-PER"])
    scorer.add(["I-PER"], ["I-PER"])  # IOB1: starts a second chunk in the new sentence
    r = scorer.result()
    assert (r["overall"]["support"], r["overall"]["correct"]) == (2, 2)
    # one sentence of two tokens is one chunk
    assert score([["B-PER", "I-PER"]], [["B-PER", "I-PER"]])["overall"]["support"] == 1
    # a chunk open at the end of a sentence is closed there, even if the next one continues
    r = score([["B-PER"], ["I-PER", "O"]], [["B-PER"], ["O", "O"]])
    assert (r["overall"]["support"], r["overall"]["predicted"], r["overall"]["correct"]) == (
        2, 1, 1,
    )


def test_strict_rejects_tags_outside_iob2() -> None:
    with pytest.raises(ValueError):
        score([["B-PER", "E-PER"]], [["O", "O"]], strict=True)
    with pytest.raises(ValueError):
        score([["O"]], [["PER"]], strict=True)
    # default mode takes them like conlleval does
    assert score([["B-PER", "E-PER"]], [["O", "O"]])["overall"]["support"] == 1


def test_strict_mode_with_valid_iob2_counts_exact_spans() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O"]]
    r = score(gold, pred, strict=True)
    assert (r["overall"]["support"], r["overall"]["predicted"], r["overall"]["correct"]) == (
        2, 2, 1,
    )
    assert r["per_type"]["LOC"]["correct"] == 0
    assert r["per_type"]["PER"]["f1"] == 1.0


# --------------------------------------------------------------------------- #
# errors, empty input, result shape, report
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("strict", [False, True])
def test_length_mismatch_raises(strict: bool) -> None:
    scorer = Scorer(strict=strict)
    with pytest.raises(ValueError, match="length"):
        scorer.add(["O", "B-PER"], ["O"])
    with pytest.raises(ValueError, match="sentences"):
        score([["O"], ["O"]], [["O"]], strict=strict)
    with pytest.raises(ValueError, match="sentences"):
        score([["O"]], [["O"], ["O"]], strict=strict)


def test_single_string_is_not_a_sentence() -> None:
    with pytest.raises(TypeError):
        Scorer().add("B-PER", "B-PER")  # type: ignore[arg-type]


@pytest.mark.parametrize("strict", [False, True])
def test_empty_input(strict: bool) -> None:
    expected_overall = {
        "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0, "predicted": 0, "correct": 0,
    }
    r = score([], [], strict=strict)
    analysis = r.pop("analysis")
    assert analysis["bootstrap"] is None and analysis["documents"] == [] and analysis["examples"] == []
    assert r == {
        "mode": "strict" if strict else "conlleval",
        "sentences": 0,
        "tokens": 0,
        "accuracy": 0.0,
        "overall": expected_overall,
        "per_type": {},
    }
    r = score([[], []], [[], []], strict=strict)
    assert (r["sentences"], r["tokens"], r["overall"]) == (2, 0, expected_overall)
    report = format_report(r)
    assert report.splitlines()[0] == (
        "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0."
    )


def test_result_can_be_taken_mid_stream() -> None:
    corpus = make_corpus("iob1", 7, sentences=10)
    scorer = Scorer()
    for k, (gold, pred) in enumerate(corpus, 1):
        scorer.add(gold, pred)
        assert scorer.result() == scorer.result()  # result() does not change the state
        assert scorer.result() == score_corpus(corpus[:k])


def test_format_report_table() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORGANISATION", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-ORGANISATION", "B-LOC"]]
    text = format_report(score(gold, pred))
    lines = text.splitlines()
    assert text.endswith("\n")
    assert lines[0] == "processed 6 tokens with 3 phrases; found: 3 phrases; correct: 2."
    assert lines[1] == "accuracy:  66.67%; precision:  66.67%; recall:  66.67%; FB1:  66.67"
    table = lines[3:lines.index("", 3)]  # the analysis follows after a blank line
    assert table[0].split() == ["type", "precision", "recall", "f1", "support", "predicted"]
    assert [row.split() for row in table[1:]] == [
        ["LOC", "0.00", "0.00", "0.00", "1", "1"],
        ["ORGANISATION", "100.00", "100.00", "100.00", "1", "1"],
        ["PER", "100.00", "100.00", "100.00", "1", "1"],
    ]
    assert len({len(row) for row in table}) == 1  # aligned columns


def test_format_report_type_less_chunks() -> None:
    text = format_report(score([["B"]], [["B"]]))
    assert "(no type)" in text


# --------------------------------------------------------------------------- #
# agreement with seqeval
# --------------------------------------------------------------------------- #

_BIO_TAG = st.sampled_from(["O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "I-ORG", "B-ORG"])


@st.composite
def _bio_corpus(draw: st.DrawFn) -> list[Sentence]:
    corpus = []
    for length in draw(st.lists(st.integers(0, 8), min_size=1, max_size=5)):
        gold = draw(st.lists(_BIO_TAG, min_size=length, max_size=length))
        pred = draw(st.lists(_BIO_TAG, min_size=length, max_size=length))
        corpus.append((gold, pred))
    return corpus


def _assert_agrees_with_seqeval(result: dict, report: dict) -> None:
    micro = report["micro avg"]
    o = result["overall"]
    assert o["precision"] == pytest.approx(float(micro["precision"]))
    assert o["recall"] == pytest.approx(float(micro["recall"]))
    assert o["f1"] == pytest.approx(float(micro["f1-score"]))
    assert o["support"] == int(micro["support"])
    seqeval_types = {k: v for k, v in report.items() if not k.endswith(" avg")}
    assert set(result["per_type"]) == set(seqeval_types)
    for type_, row in seqeval_types.items():
        ours = result["per_type"][type_]
        assert ours["precision"] == pytest.approx(float(row["precision"]))
        assert ours["recall"] == pytest.approx(float(row["recall"]))
        assert ours["f1"] == pytest.approx(float(row["f1-score"]))
        assert ours["support"] == int(row["support"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bio_corpus())
def test_default_mode_agrees_with_seqeval_default(corpus: list[Sentence]) -> None:
    from seqeval.metrics import classification_report

    golds, preds = [g for g, _ in corpus], [p for _, p in corpus]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(golds, preds, output_dict=True, zero_division=0)
    _assert_agrees_with_seqeval(score(golds, preds), report)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bio_corpus())
def test_strict_mode_agrees_with_seqeval_strict(corpus: list[Sentence]) -> None:
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    golds, preds = [g for g, _ in corpus], [p for _, p in corpus]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = classification_report(
            golds, preds, output_dict=True, zero_division=0, mode="strict", scheme=IOB2
        )
    _assert_agrees_with_seqeval(score(golds, preds, strict=True), report)


_BIOES_TAG = st.sampled_from(
    ["O", "O"] + [f"{p}-{t}" for p in "BIES" for t in ("PER", "LOC")]
)
_ANY_TAG = st.sampled_from(WEIRD_TAGS)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_chunk_spans_match_scorer_counts(data: st.DataObject) -> None:
    # for typed B/I/E/S/O tags, conlleval's correct count is the span intersection
    tags = data.draw(st.sampled_from([_BIOES_TAG, _ANY_TAG]), label="alphabet")
    length = data.draw(st.integers(0, 10))
    gold = data.draw(st.lists(tags, min_size=length, max_size=length))
    pred = data.draw(st.lists(tags, min_size=length, max_size=length))
    r = score([gold], [pred])
    gold_chunks, pred_chunks = conll_chunks(gold), conll_chunks(pred)
    # one chunk per startOfChunk, for any tags
    assert r["overall"]["support"] == len(gold_chunks)
    assert r["overall"]["predicted"] == len(pred_chunks)
    if tags is _BIOES_TAG:
        assert r["overall"]["correct"] == len(set(gold_chunks) & set(pred_chunks))


# --------------------------------------------------------------------------- #
# agreement with the real conlleval.pl
# --------------------------------------------------------------------------- #


def _conlleval_script() -> Path | None:
    candidates = [
        os.environ.get("CONLLEVAL_PL", ""),
        str(Path(__file__).parent / "data" / "conlleval.pl"),
        str(Path(__file__).resolve().parents[3] / "shared" / "tools" / "conlleval.pl"),  # ../shared beside the checkout
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _run_conlleval(text: str) -> str:
    script = _conlleval_script()
    perl = shutil.which("perl")
    if script is None or perl is None:
        pytest.skip(
            "perl or conlleval.pl missing "
            "(set CONLLEVAL_PL, add tests/data/conlleval.pl or put ../shared/tools/conlleval.pl beside the checkout)"
        )
    done = subprocess.run(
        [perl, str(script)], input=text, capture_output=True, text=True, check=True, timeout=30
    )
    return done.stdout


@pytest.mark.parametrize("style", ["iob1", "iob2", "mixed", "weird"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_conlleval_pl(style: str, seed: int) -> None:
    corpus = make_corpus(style, seed)
    assert_matches_conlleval(score_corpus(corpus), _run_conlleval(conll_file_text(corpus)))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.lists(st.tuples(_ANY_TAG, _ANY_TAG), max_size=8),
        min_size=1,
        max_size=4,
    )
)
def test_matches_conlleval_pl_on_odd_tags(sentences: list[list[tuple[str, str]]]) -> None:
    corpus = [([g for g, _ in s], [p for _, p in s]) for s in sentences]
    assert_matches_conlleval(score_corpus(corpus), _run_conlleval(conll_file_text(corpus)))


# Output of the real conlleval.pl (version 2004-01-26) on make_corpus(style, seed),
# recorded so the comparison also runs where the script is not available.
CONLLEVAL_RECORDED: dict[tuple[str, int], str] = {
    ("iob1", 0): (
        "processed 248 tokens with 79 phrases; found: 108 phrases; correct: 47.\n"
        "accuracy:  77.42%; precision:  43.52%; recall:  59.49%; FB1:  50.27\n"
        "              LOC: precision:  32.00%; recall:  57.14%; FB1:  41.03  25\n"
        "             MISC: precision:  36.67%; recall:  47.83%; FB1:  41.51  30\n"
        "              ORG: precision:  53.12%; recall:  62.96%; FB1:  57.63  32\n"
        "              PER: precision:  52.38%; recall:  73.33%; FB1:  61.11  21\n"
    ),
    ("iob2", 1): (
        "processed 247 tokens with 79 phrases; found: 116 phrases; correct: 62.\n"
        "accuracy:  78.54%; precision:  53.45%; recall:  78.48%; FB1:  63.59\n"
        "              LOC: precision:  47.06%; recall:  72.73%; FB1:  57.14  34\n"
        "             MISC: precision:  75.86%; recall:  95.65%; FB1:  84.62  29\n"
        "              ORG: precision:  46.43%; recall:  72.22%; FB1:  56.52  28\n"
        "              PER: precision:  44.00%; recall:  68.75%; FB1:  53.66  25\n"
    ),
    ("mixed", 2): (
        "processed 227 tokens with 109 phrases; found: 116 phrases; correct: 89.\n"
        "accuracy:  83.70%; precision:  76.72%; recall:  81.65%; FB1:  79.11\n"
        "              LOC: precision:  72.41%; recall:  77.78%; FB1:  75.00  29\n"
        "             MISC: precision:  82.76%; recall:  82.76%; FB1:  82.76  29\n"
        "              ORG: precision:  80.77%; recall:  80.77%; FB1:  80.77  26\n"
        "              PER: precision:  71.88%; recall:  85.19%; FB1:  77.97  32\n"
    ),
    ("weird", 0): (
        "processed 159 tokens with 110 phrases; found: 111 phrases; correct: 80.\n"
        "accuracy:  75.47%; precision:  72.07%; recall:  72.73%; FB1:  72.40\n"
        "                 : precision:  64.10%; recall:  69.44%; FB1:  66.67  39\n"
        "                 : precision:  64.10%; recall:  69.44%; FB1:  66.67  39\n"
        "              LOC: precision:  83.33%; recall:  71.43%; FB1:  76.92  24\n"
        "              ORG: precision:  66.67%; recall:  76.92%; FB1:  71.43  15\n"
        "            ORG-X: precision:  72.73%; recall:  72.73%; FB1:  72.73  11\n"
        "              PER: precision:  77.27%; recall:  77.27%; FB1:  77.27  22\n"
    ),
}


@pytest.mark.parametrize("case", sorted(CONLLEVAL_RECORDED))
def test_matches_recorded_conlleval_output(case: tuple[str, int]) -> None:
    style, seed = case
    assert_matches_conlleval(score_corpus(make_corpus(style, seed)), CONLLEVAL_RECORDED[case])


def test_format_report_lists_notes_after_the_table() -> None:
    result = score([["B-PER"]], [["B-PER"]])
    result["notes"] = ["f.conll: IOB1 tags converted to IOB2"]
    lines = format_report(result).splitlines()
    assert lines[:2] == format_report(score([["B-PER"]], [["B-PER"]])).splitlines()[:2]
    assert lines[-2:] == ["", "note: f.conll: IOB1 tags converted to IOB2"]


def test_count_chunks_counts_what_conll_chunks_finds():
    """The writers' entity count (count_chunks) equals the number of conlleval chunks for every
    sequence of a few tags, well-formed or not, of every scheme."""
    from itertools import product

    from nerbatch.core.schemes import conll_chunks, count_chunks

    tags = ["O", "B-PER", "I-PER", "I-LOC", "E-LOC", "S-PER", "B-0", "PER", "[", "."]
    for n in range(4):
        for seq in product(tags, repeat=n):
            assert count_chunks(seq) == len(conll_chunks(seq)), seq


def _reference_chunks(tags):
    """conll_chunks as a plain port of conlleval's loop, split and checked at every word (the oracle for
    the remembered-pairs version): every word moves the state on, an ``O`` after ``O-PER`` too."""
    from nerbatch.core.schemes import end_of_chunk, split_tag, start_of_chunk

    chunks, prev_tag, prev_type, open_type, open_start = [], "O", "", None, 0
    for i, raw in enumerate(tags):
        tag, type_ = split_tag(raw)
        starts = start_of_chunk(prev_tag, tag, prev_type, type_)
        if open_type is not None and (starts or end_of_chunk(prev_tag, tag, prev_type, type_)):
            chunks.append((open_type, open_start, i))
            open_type = None
        if starts:
            open_type, open_start = type_, i
        prev_tag, prev_type = tag, type_
    if open_type is not None:
        chunks.append((open_type, open_start, len(tags)))
    return chunks


def test_conll_chunks_equal_the_word_by_word_port_on_every_short_sequence():
    from itertools import product

    from nerbatch.core.schemes import conll_chunks

    assert conll_chunks(["O-PER", "O", "PER"]) == []  # the O moves conlleval's type on: PER starts nothing

    tags = ["O", "B-PER", "I-PER", "I-LOC", "E-LOC", "S-PER", "B-0", "PER", "O-X", "[", "]", ".", "B"]
    for n in range(5):
        for seq in product(tags, repeat=n):
            assert conll_chunks(list(seq)) == _reference_chunks(seq), seq
