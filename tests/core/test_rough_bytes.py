"""rough_bytes (the block size bound's measure): strings' lengths plus 8 bytes a reference, whatever the nesting."""

from nerbatch.core.record import Sentence, rough_bytes, sentence_bytes


def test_lists_of_strings_and_everything_else():
    assert rough_bytes(["EU", "rejects", ""]) == 2 + 7 + 0 + 8 * 3 + 8
    assert rough_bytes(("a",)) == 1 + 8 + 8
    assert rough_bytes([]) == 8
    mixed = ["ab", b"xyz", 3, None, ["c"], {"k": "vv"}]
    assert rough_bytes(mixed) == (2 + 8) + (3 + 8) + 8 + 8 + (1 + 8 + 8) + (2 + 8 + 8) + 8
    assert rough_bytes({"tokens": ["a", "bb"], "n": 1}) == (1 + 2 + 16 + 8) + 8 + 8
    assert rough_bytes("abc") == 11 and rough_bytes(b"") == 8 and rough_bytes(2.5) == 8


def test_a_sentence_counts_its_record_once():
    first = Sentence(["Turku", "is"], source=["Turku B-LOC", "is O"], text=None)
    later = Sentence(["old"], source=["Turku B-LOC", "is O"], text=None, part=1)
    assert sentence_bytes(first) == rough_bytes(["Turku", "is"]) + rough_bytes(first.source) + 8
    assert sentence_bytes(later) == rough_bytes(["old"])
