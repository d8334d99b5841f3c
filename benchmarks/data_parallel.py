"""Would worker processes make `nerbatch tag` faster on a small CPU? (issue #12, BENCHMARKS.md)

Two measurements on CoNLL-2003 test, fp32, no document context, each on quiet cores:

1. forward only: the planner's real batches of test x1 (recorded as ``benchmarks/buckets.py`` does), run by
   one process with N torch threads, against N processes with one thread each, each running its share of the
   rows of every batch at the same time (pure data parallelism of the model call);
2. whole process: ``nerbatch tag`` of test x2 with N threads, against N ``nerbatch tag --threads 1``
   processes at once, each on its share of the sentences (what worker processes would give, tokenising,
   decoding and writing included).

    .venv/bin/python benchmarks/data_parallel.py --model build/seed43 [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "conll2003" / "test.txt"


def forward_worker(model: str, batches: str, threads: int, part: int, parts: int) -> None:
    import torch

    from benchmarks.buckets import time_batches
    from nerbatch.model.loading import load_model
    from nerbatch.tagging.backends import logits_of

    torch.set_num_threads(threads)
    _, net = load_model(model)
    forward = logits_of(net.eval())
    with open(batches, "rb") as fh:
        recorded = pickle.load(fh)
    # this process's share of every batch's rows, as torch tensors
    mine = []
    for arrays in recorded:
        lo, hi = arrays[0].shape[0] * part // parts, arrays[0].shape[0] * (part + 1) // parts
        if hi > lo:
            mine.append([None if a is None else torch.from_numpy(a[lo:hi]) for a in arrays])
    with torch.inference_mode():
        time_batches(lambda b: forward(*b), mine, passes=1)  # warm-up pass
        print(f"{time_batches(lambda b: forward(*b), mine, passes=1):.3f}", flush=True)


def at_once(cmds: list[list[str]]) -> float:
    """Wall seconds of running ``cmds`` together (all must succeed)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"failed ({p.returncode}): {' '.join(p.args)}\n{err}")
    return time.perf_counter() - t0


def split_docs(src: Path, parts: int, work: Path, repeat: int) -> tuple[Path, list[Path]]:
    """``src`` repeated ``repeat`` times, and the same cut into ``parts`` files of whole sentences."""
    blocks = [b for b in src.read_text(encoding="utf-8").split("\n\n") if b.strip()] * repeat
    whole = work / "whole.conll"
    whole.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")
    out = []
    for k in range(parts):
        f = work / f"part{k}.conll"
        f.write_text("\n\n".join(blocks[len(blocks) * k // parts: len(blocks) * (k + 1) // parts]) + "\n\n", encoding="utf-8")
        out.append(f)
    return whole, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder (a CoNLL-2003 model: the README's)")
    ap.add_argument("--data", type=Path, default=DATA, help="CoNLL-2003 test.txt")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="processes (and threads of the one-process rows)")
    ap.add_argument("--forward-worker", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.forward_worker:
        b, t, k, n = args.forward_worker
        forward_worker(args.model, b, int(t), int(k), int(n))
        return
    n = args.workers
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="nerbatch-dp-") as tmp:
        work = Path(tmp)
        from benchmarks.buckets import record_batches

        batches = record_batches(args.model, str(args.data), tmp)
        with open(work / "batches.pkl", "wb") as fh:
            pickle.dump(batches, fh)

        def fw(threads: int, part: int, parts: int) -> list[str]:
            return [py, __file__, "--model", args.model, "--forward-worker", str(work / "batches.pkl"), str(threads), str(part), str(parts)]

        one = subprocess.run(fw(n, 0, 1), check=True, capture_output=True, text=True).stdout.split()[-1]
        procs = [subprocess.Popen(fw(1, k, n), stdout=subprocess.PIPE, text=True) for k in range(n)]
        each = [float(p.communicate()[0].split()[-1]) for p in procs]
        print(f"forward only, test x1 ({len(batches)} batches): 1 process x {n} threads {float(one):.2f} s; "
              f"{n} processes x 1 thread {max(each):.2f} s (slowest; each {', '.join(f'{e:.2f}' for e in each)})")

        whole, parts = split_docs(args.data, n, work, 2)
        tag = [py, "-m", "nerbatch", "tag", "--model", args.model, "--no-context", "--precision", "fp32", "-q"]
        # a warm cache first: the compiled package built (waited for), so no timed run tags uncompiled
        os.environ["NERBATCH_COMPILE_WAIT"] = "1"
        at_once([tag + [str(parts[0]), "-o", str(work / "warm.out.conll")]])
        del os.environ["NERBATCH_COMPILE_WAIT"]
        t1 = at_once([tag + [str(whole), "-o", str(work / "whole.out.conll")]])
        tn = at_once([tag + [str(f), "-o", str(work / f"{f.stem}.out.conll"), "--threads", "1"] for f in parts])
        print(f"whole process, test x2: 1 process x {n} threads {t1:.2f} s; {n} processes x 1 thread on 1/{n} each {tn:.2f} s "
              f"({t1 / tn:.2f}x)")


if __name__ == "__main__":
    main()
