"""Training speed: nerbatch's settings against the plain recipe, same encoder, data and epochs.

plain    = the notebook's Trainer settings: random batches padded to their longest sequence, fp32,
           lr 5e-5, batch 32, no warm-up, no document context
bf16     = plain + bf16 autocast (AMX on this CPU)
grouped  = plain + nerbatch's length-grouped batches (random pools of 8 batches sorted by length)
nerbatch = bf16 + grouped (what `nerbatch train --bf16` does), same lr/batch/epochs/data

    .venv/bin/python benchmarks/train_speed.py [--every 3] [--epochs 1] [--recipes plain,nerbatch] [--out ...]

Prints seconds per epoch and dev F1 (conlleval rules) for both, and the speed ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nerbatch.training.train import TrainOptions, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "conll2003"))
    ap.add_argument("--every", type=int, default=3, help="keep every Nth training sentence")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--recipes", default="plain,nerbatch", help="comma list of plain, bf16, grouped, nerbatch (first = baseline)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--pool", type=int, default=8, help="batches per sorting pool for the grouped recipes")
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "train_speed.json"))
    args = ap.parse_args()
    train_file = os.path.join(args.data, "train.txt")
    dev_file = os.path.join(args.data, "valid.txt")
    if not os.path.exists(train_file):
        sys.exit(f"no CoNLL-2003 data at {args.data}")
    rows = []
    recipes = {"plain": (False, False), "bf16": (True, False), "grouped": (False, True), "nerbatch": (True, True)}
    for name in args.recipes.split(","):
        bf16, grouped = recipes[name]
        with tempfile.TemporaryDirectory() as out:
            t0 = time.time()
            res = train(
                TrainOptions(
                    train=[train_file], dev=dev_file, output_dir=out, epochs=args.epochs, lr=5e-5, batch_size=32,
                    warmup=0.0, context=False, every=args.every, bf16=bf16, group_by_length=grouped, group_pool=args.pool, seed=args.seed, quiet=True,
                )
            )
            rows.append({
                "recipe": name,
                "bf16": bf16,
                "group_by_length": grouped,
                "group_pool": args.pool if grouped else None,
                "train_seconds": res["train_seconds"],
                "seconds_per_epoch": res["train_seconds"] / args.epochs,
                "dev_f1": res["final"]["f1"],
                "wall_seconds": time.time() - t0,
            })
    base = rows[0]["seconds_per_epoch"]
    print(f"CoNLL-2003 train (every {args.every}. sentence), {args.epochs:g} epoch(s), dev = valid, MiniLM-L6-H384")
    print(f"{'recipe':10} {'s/epoch':>8} {'dev F1':>7} {'speed-up':>8}")
    for r in rows:
        r["speedup"] = base / r["seconds_per_epoch"]
        print(f"{r['recipe']:10} {r['seconds_per_epoch']:8.1f} {100 * r['dev_f1']:7.2f} {r['speedup']:7.2f}x")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump({"every": args.every, "epochs": args.epochs, "seed": args.seed, "loadavg_end": os.getloadavg(), "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
