"""Ray with N workers against the local engine, and what the Ray driver costs per sentence.

The pipeline ceiling's near-free model (``pipeline_ceiling.build_micro_model``) tags CoNLL-2003 train.txt
(x5 = 70,205 sentences by default) into CoNLL, once with ``--engine local`` (a separate process) and once
with ``--engine ray --workers N`` from this process on a local Ray of N CPUs started beforehand (its
start-up is not counted). The big input is cut into parts (``--part-size``, default: about four parts per
worker), tagged and written by the workers. Each row prints wall seconds and sentences/s; the Ray row
also the driver's CPU seconds (this process: ``time.process_time``, all its threads) and those per
100,000 sentences: with the workers reading and writing, the driver's share should not grow with the
sentences, only with the files and parts. The outputs of both engines are checked to be the same bytes.

    .venv/bin/python benchmarks/ray_io.py [--data DIR] [--times 5] [--workers 2] [--part-size BYTES] [--keep DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # noqa: E402 - benchmarks/ is on the path of a script run from it
from pipeline_ceiling import build_micro_model, write_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TAG = ["--no-compile", "--precision", "fp32", "--no-context", "--device", "cpu"]


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_local(model: Path, data: Path, out: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `nerbatch tag --engine local` as its own process."""
    cmd = [sys.executable, "-m", "nerbatch", "tag", str(data), "-o", str(out), "--model", str(model), *TAG, "--quiet"]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr}")
    return wall, cpu


def run_ray(model: Path, data: Path, out: Path, workers: int, part_size: int):
    """Wall seconds, this driver's CPU seconds and the summary of `tag_files(engine="ray")` in this process."""
    from nerbatch import tag_files
    from nerbatch.tagging.tagger import TaggerOptions

    options = TaggerOptions(device="cpu", precision="fp32", compile=False, context=False)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = tag_files([str(data)], str(out), model=str(model), tagger_options=options, engine="ray",
                       workers=workers, part_size=part_size)
    return time.perf_counter() - t0, time.process_time() - cpu0, result.summary


def joined(path: Path) -> bytes:
    from nerbatch.io.parts import is_parts_folder, part_paths

    if path.is_dir() and is_parts_folder(str(path)):
        return b"".join(Path(p).read_bytes() for p in part_paths(str(path)))
    return path.read_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "conll2003"), help="folder with train.txt")
    ap.add_argument("--times", type=int, default=5, help="train.txt this many times in one file (default 5)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--part-size", type=int, default=None, help="bytes per part (default: the input / (4 x workers))")
    ap.add_argument("--keep", default=None, help="keep the model, data and outputs in this folder")
    args = ap.parse_args()
    src = Path(args.data) / "train.txt"
    if not src.is_file():
        raise SystemExit(f"{src}: not found; pass --data DIR with CoNLL-2003 train.txt")
    sys.path.insert(0, str(ROOT))
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")  # for the Ray workers
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nerbatch-ray-io-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        model = work / "micro"
        note = build_micro_model(model, "minilm", 128)  # the model of the table in BENCHMARKS.md ("Ray workers")
        data = work / f"train{args.times}.conll"
        n = write_data(src, data, args.times)
        size = data.stat().st_size
        part_size = args.part_size or max(1 << 20, size // (4 * args.workers))
        print(f"CPU: {cpu_name()}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}")
        print(f"model: {note}; data: train.txt x{args.times} ({n:,} sentences, {size / 1e6:.1f} MB); parts of {part_size / 1e6:.1f} MB")
        print("timings are indicative when other work shares the CPU")
        wall, cpu = run_local(model, data, work / "local.conll")
        print(f"{'row':<28} {'wall s':>7} {'sent/s':>8} {'driver CPU s':>13} {'per 100k sent':>14}")  # local: the whole process
        print(f"{'local engine (its process)':<28} {wall:7.1f} {n / wall:8,.0f} {cpu:13.2f} {cpu / n * 1e5:14.2f}")
        import ray

        t0 = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        print(f"(local Ray of {args.workers} CPUs started in {time.perf_counter() - t0:.1f} s, not counted below)")
        try:
            wall, cpu, summary = run_ray(model, data, work / "ray.conll", args.workers, part_size)
        finally:
            ray.shutdown()
        parts = summary.per_file[0].get("parts", 1)
        name = f"ray, {args.workers} workers, {parts} parts"
        print(f"{name:<28} {wall:7.1f} {n / wall:8,.0f} {cpu:13.2f} {cpu / n * 1e5:14.2f}")
        same = joined(work / "ray.conll") == (work / "local.conll").read_bytes()
        print(f"outputs: {'the same bytes' if same else 'DIFFERENT'}")
        if not same:
            raise SystemExit(1)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
