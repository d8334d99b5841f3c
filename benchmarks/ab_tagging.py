"""In-process A/B of the tagging path: run this under two source trees and compare.

    (cd OLD_TREE && PYTHONPATH=$PWD python /path/to/benchmarks/ab_tagging.py MODEL fp32 0)
    python benchmarks/ab_tagging.py MODEL fp32 0          # this tree

Arguments: model folder, precision (fp32/bf16/int8), compile (0/1). Tags CoNLL-2003 test (context off, after a
64-sentence warm-up) and prints one JSON line: wall seconds, sentences/s, seconds inside the model forward,
padded and real subword tokens. Used for the refactor check of issue #9 (see the closing notes).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from nerbatch.io import read
from nerbatch.tagging.tagger import Tagger, TaggerOptions

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "conll2003" / "test.txt"


def main() -> None:
    model, precision, compile_ = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    data = os.environ.get("AB_DATA", str(DATA))
    tagger = Tagger(model, TaggerOptions(device="cpu", precision=precision, compile=compile_, context=False))
    tagger.load()
    list(tagger.tag_sentences(list(read(data))[:64]))  # warm-up
    sents = list(read(data))
    tagger.forward_seconds, tagger.padded_tokens, tagger.tokens_seen = 0.0, 0, 0
    t0 = time.perf_counter()
    out = list(tagger.tag_sentences(sents))
    wall = time.perf_counter() - t0
    print(json.dumps({
        "precision": precision, "compile": compile_, "wall_s": round(wall, 2), "sent_per_s": round(len(out) / wall, 1),
        "forward_s": round(tagger.forward_seconds, 2), "padded_tokens": tagger.padded_tokens,
        "tokens_seen": tagger.tokens_seen,
    }))


if __name__ == "__main__":
    main()
