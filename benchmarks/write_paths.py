"""How long the run plan takes for a large folder run: ``plan_jobs`` and
``check_write_paths`` for N one-line inputs in a temporary folder (default 100,000).

``check_write_paths`` compares every path a run writes (outputs, rejects files, reports, logs) with
every input, every model file and every other write, by real path and inode: one dictionary look-up
each, so it grows linearly (the pairwise check it replaced took 11.7 s for 500 files and never
finished for 100,000). Two measurements:

* ``plan_jobs``: walking the input folder, naming the outputs, and the check (the outputs do not
  exist yet, as on a first run);
* ``check_write_paths`` alone, with the outputs present (a rerun: every path has an inode to
  compare) and ``--on-error skip`` (a rejects file per output), plus a report and a log.

Usage: ``python benchmarks/write_paths.py [N]``; prints the wall and CPU seconds of each, the CPU and
the load average (wall seconds on a busy machine say little: compare the CPU seconds there).
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
import time

from machine import cpu_name  # noqa: E402 - benchmarks/ is on the path of a script run from it


def main(n: int = 100_000) -> None:
    from nerbatch.io.paths import check_write_paths
    from nerbatch.run.plan import plan_jobs

    with tempfile.TemporaryDirectory(prefix="nerbatch-write-paths-") as root:
        src, out = os.path.join(root, "in"), os.path.join(root, "out")
        os.mkdir(src)
        for i in range(n):
            with open(os.path.join(src, f"doc{i:06d}.conll"), "w", encoding="utf-8") as fh:
                fh.write("Turku B-LOC\n")
        t0, c0 = time.perf_counter(), time.process_time()
        jobs = plan_jobs([src], out)
        planned, planned_cpu = time.perf_counter() - t0, time.process_time() - c0
        for job in jobs:
            open(job.output, "w").close()
        extra = {"--report": os.path.join(root, "report.txt"), "--log-json": os.path.join(root, "log.jsonl")}
        t0, c0 = time.perf_counter(), time.process_time()
        check_write_paths(jobs, extra, rejects=True)
        checked, checked_cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"{n:,} inputs: plan_jobs {planned:.2f} s ({planned_cpu:.2f} s CPU; walk, names, check); "
          f"check_write_paths {checked:.2f} s ({checked_cpu:.2f} s CPU; {2 * n + 2:,} writes, outputs present)")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"CPU: {cpu_name()}; load average {load:.1f}; Python {platform.python_version()}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
