"""Outputs of two source trees side by side: `nerbatch tag` from each on the same input and model,
for every output format and both engines, compared byte for byte (Parquet: table equality).

    python benchmarks/same_outputs.py --old ../old-checkout --input ../shared/data/conll2003/test.txt --model M

Each tree runs as `python -m nerbatch` with PYTHONPATH set to it (the same interpreter and packages).
Prints one line per (engine, format) and exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("conll", "jsonl", "parquet", "html")


def run(tree: Path, args: list[str]) -> None:
    # run in the tree itself: `python -m` puts the working folder first on the path
    env = {**os.environ, "PYTHONPATH": str(tree), "NERBATCH_COMPILE": "0"}
    res = subprocess.run([sys.executable, "-m", "nerbatch", *args], env=env, cwd=tree, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{tree}: nerbatch {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-2000:]}")


def same(a: Path, b: Path, fmt: str) -> bool:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(a).equals(pq.read_table(b))
    return a.read_bytes() == b.read_bytes()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", required=True, type=os.path.abspath, help="the other source tree (a checkout of the commit to compare with)")
    ap.add_argument("--new", default=str(ROOT), help="this tree (default: the checkout holding this script)")
    ap.add_argument("--input", required=True, type=os.path.abspath)
    ap.add_argument("--model", required=True, type=os.path.abspath)
    ap.add_argument("--engines", default="local,workers,ray",
                    help="local: one process; workers: the local engine with --workers 2 (a tree without local workers ignores it); ray")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--extra", default="--precision fp32 --no-compile", help="tag options for both runs")
    a = ap.parse_args()
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for engine in a.engines.split(","):
            for fmt in a.formats.split(","):
                outs = []
                for name, tree in (("old", Path(a.old)), ("new", Path(a.new))):
                    out = Path(tmp) / f"{name}-{engine}.{fmt}"
                    args = ["tag", a.input, "-o", str(out), "--model", a.model, "--output-format", fmt, "-q", *a.extra.split()]
                    if engine == "ray":
                        args += ["--engine", "ray", "--workers", "2"]
                    elif engine == "workers":
                        args += ["--workers", "2"]
                    run(tree, args)
                    outs.append(out)
                ok = same(outs[0], outs[1], fmt)
                bad += not ok
                print(f"{engine:7} {fmt:8} {'identical' if ok else 'DIFFERENT'} ({outs[1].stat().st_size:,} bytes)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
