"""nerbatch throughput benchmark on CoNLL-2003 test (see benchmarks/README.md).

    .venv/bin/python benchmarks/bench.py                    # full run (make bench)
    .venv/bin/python benchmarks/bench.py --quick            # smoke run on the first 300 sentences
    .venv/bin/python benchmarks/bench.py --int8-candidates  # int8 back-ends on the first 1000 sentences

Every row runs in its own child process (this script re-run with ``--worker``, or the ``nerbatch``
command itself), so each row's peak RSS is its own (``os.wait4`` rusage) and one crash cannot take
the rest down. Library rows (HF pipeline, plain loop, nerbatch in-process) time the tagging call
with the model already loaded (after a few warm-up sentences); process rows time the whole command.
F1 uses conlleval rules (``nerbatch.evaluation.scoring.score``) against the gold tags of the same sentences.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "conll2003"
DEFAULT_MODEL = ROOT / "build" / "bench-model"
EXTRA_SITE = ROOT / "build" / "bench-extra"  # optional packages for --int8-candidates (torchao)
TRAIN_ARGS = ["--every", "5", "--epochs", "1", "--no-context"]  # bf16: as `nerbatch train` measures it
PIPELINE_BATCHES = (8, 16, 32, 64)
CHILD_TIMEOUT = 3600


# --------------------------------------------------------------------------------------------- #
# CoNLL helpers (own tiny parser: the benchmark must not depend on the reader it measures)
# --------------------------------------------------------------------------------------------- #


def conll_blocks(path: Path) -> list[list[str]]:
    """Raw token-line blocks (sentences) of a CoNLL file; -DOCSTART- lines are skipped."""
    blocks: list[list[str]] = []
    cur: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("-DOCSTART-"):
                if cur:
                    blocks.append(cur)
                    cur = []
                continue
            cur.append(line)
    if cur:
        blocks.append(cur)
    return blocks


def read_gold(path: Path) -> list[tuple[list[str], list[str]]]:
    """(words, gold tags) per sentence: first and last column."""
    out = []
    for block in conll_blocks(path):
        cols = [ln.split() for ln in block]
        out.append(([c[0] for c in cols], [c[-1] for c in cols]))
    return out


def read_tagged(path: Path) -> list[tuple[list[str], list[str]]]:
    """(gold, pred) per sentence of a `nerbatch tag` CoNLL output (`word ... gold pred`)."""
    out = []
    for block in conll_blocks(path):
        cols = [ln.split() for ln in block]
        out.append(([c[-2] for c in cols], [c[-1] for c in cols]))
    return out


def f1_of(pairs) -> float:
    from nerbatch.evaluation.scoring import score

    pairs = list(pairs)
    return score([g for g, _ in pairs], [p for _, p in pairs])["overall"]["f1"]


def write_subset(src: Path, dst: Path, limit: int | None) -> int:
    """Copy ``src`` (whole, or its first ``limit`` sentences, -DOCSTART- lines kept); returns sentences."""
    n = 0
    with open(src, encoding="utf-8") as fh, open(dst, "w", encoding="utf-8") as out:
        in_sent = False
        for line in fh:
            blank = not line.strip()
            if blank and in_sent:
                n += 1
                in_sent = False
                out.write(line)
                if limit is not None and n >= limit:
                    break
                continue
            if not blank and not line.startswith("-DOCSTART-"):
                in_sent = True
            out.write(line)
        if in_sent:
            n += 1
            out.write("\n")
    return n


def write_repeated(src: Path, dst: Path, times: int) -> None:
    data = src.read_bytes()
    if not data.endswith(b"\n\n"):
        data = data.rstrip(b"\n") + b"\n\n"
    with open(dst, "wb") as out:
        for _ in range(times):
            out.write(data)


# --------------------------------------------------------------------------------------------- #
# child processes: wall time and peak RSS of exactly that process
# --------------------------------------------------------------------------------------------- #


def run_child(cmd: list[str], log: Path, timeout: float = CHILD_TIMEOUT, env: dict | None = None) -> dict:
    """Run ``cmd`` (stdout/stderr to ``log``); wall seconds, exit code and peak RSS (MiB) from wait4."""
    with open(log, "wb") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024}


def log_tail(log: Path, lines: int = 6) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    keep = [ln for ln in text if ln.strip() and "Loading weights" not in ln]
    return " | ".join(keep[-lines:])


def run_worker(spec: dict, work: Path, name: str) -> dict:
    """Re-run this script as ``--worker`` with ``spec``; returns the worker's result + rc/wall/RSS."""
    spec_path = work / f"{name}.spec.json"
    result_path = work / f"{name}.result.json"
    spec = dict(spec, result=str(result_path))
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    if result_path.exists():
        result_path.unlink()
    log = work / f"{name}.log"
    proc = run_child([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path)], log)
    if proc["rc"] != 0 or not result_path.exists():
        raise RuntimeError(f"worker exit {proc['rc']}: {log_tail(log)}")
    res = json.loads(result_path.read_text(encoding="utf-8"))
    res["peak_rss_mb"] = proc["peak_rss_mb"]
    res["process_wall_s"] = proc["wall_s"]
    return res


# --------------------------------------------------------------------------------------------- #
# workers (run in the child process)
# --------------------------------------------------------------------------------------------- #


def worker_info(spec: dict) -> dict:
    """Model size, subword lengths of the x1 set, and this machine's matmul GFLOP/s."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    model = AutoModelForTokenClassification.from_pretrained(spec["model"])
    tok = AutoTokenizer.from_pretrained(spec["model"])
    total = sum(p.numel() for p in model.parameters())
    base = getattr(model, model.base_model_prefix, model)
    emb = sum(p.numel() for p in base.embeddings.parameters()) if hasattr(base, "embeddings") else 0
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    cfg = model.config
    sents = read_gold(Path(spec["input"]))
    lengths = []
    for i in range(0, len(sents), 256):
        enc = tok([w for w, _ in sents[i : i + 256]], is_split_into_words=True, add_special_tokens=True)
        lengths.extend(len(x) for x in enc["input_ids"])

    def gflops(dtype, n: int, reps: int = 5, budget: float = 3.0) -> tuple[float, float]:
        """(GFLOP/s, seconds of one call): best of ``reps`` calls, within ``budget`` seconds."""
        a = torch.randn(n, n).to(dtype)
        b = torch.randn(n, n).to(dtype)
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = time.perf_counter() - t0
        t_end = time.perf_counter() + budget
        for _ in range(reps):
            if time.perf_counter() + best > t_end:
                break
            t0 = time.perf_counter()
            torch.matmul(a, b)
            best = min(best, time.perf_counter() - t0)
        return 2 * n**3 / best / 1e9, best

    def best_rate(dtype) -> float:
        # bounded: where bf16 is emulated (no AVX512-BF16/AMX) a 3072^2 bf16 matmul takes a minute, and
        # this loop took over 9 min on a Zen 3; stop at the first size whose call takes over 0.5 s
        rate = 0.0
        for n in (1024, 2048, 3072):
            r, call = gflops(dtype, n)
            rate = max(rate, r)
            if call > 0.5:
                break
        return rate

    fp32 = best_rate(torch.float32)
    bf16 = best_rate(torch.bfloat16)
    # what `--precision auto` measures and chooses here (nerbatch.tagging.precision; cached per CPU)
    from nerbatch.tagging.precision import resolve_precision
    from nerbatch.tagging.tagger import TaggerOptions

    _, choice = resolve_precision(spec["model"], TaggerOptions(device="cpu"))

    def model_gemms(dtype, rows: int = 4096, reps: int = 5) -> float:
        """GFLOP/s of this model's own Linear shapes at a nerbatch-sized batch (best of reps): the
        rate that bounds any implementation that runs the model's matrix products at this precision."""
        shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
        ws = [(torch.randn(o, i).to(dtype), torch.randn(o).to(dtype)) for o, i in shapes]
        xs = {i: torch.randn(rows, i).to(dtype) for _, i in shapes}
        flops = sum(2 * rows * o * i for o, i in shapes)
        best = float("inf")
        with torch.inference_mode():
            for _ in range(reps + 1):
                t0 = time.perf_counter()
                for (_, i), (w, b) in zip(shapes, ws):
                    torch.nn.functional.linear(xs[i], w, b)
                best = min(best, time.perf_counter() - t0)
        return flops / best / 1e9

    gemm_fp32 = model_gemms(torch.float32)
    return {
        "params": total,
        "embedding_params": emb,
        "non_embedding_params": total - emb,
        "linear_weights": linear,
        "layers": cfg.num_hidden_layers,
        "hidden": cfg.hidden_size,
        "heads": cfg.num_attention_heads,
        "intermediate": getattr(cfg, "intermediate_size", None),
        "model_type": cfg.model_type,
        "labels": cfg.num_labels,
        "sentences": len(sents),
        "words": sum(len(w) for w, _ in sents),
        "subword_tokens": sum(lengths),
        "mean_seq": sum(lengths) / max(1, len(lengths)),
        "max_seq": max(lengths) if lengths else 0,
        "matmul_fp32_gflops": fp32,
        "matmul_bf16_gflops": bf16,
        "model_gemms_fp32_gflops": gemm_fp32,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "precision_auto": choice.as_dict(),  # rates (GFLOP/s), ratios vs fp32, rows, seconds, the choice
    }


def entities_to_tags(words: list[str], entities: list[dict]) -> list[str]:
    """HF pipeline entities (character offsets in " ".join(words)) -> one IOB2 tag per word.

    A word takes the entity that covers its first character, else the first entity overlapping it.
    The pipeline splits words at punctuation ("Jean-Luc" is jean / - / luc) and may start a new
    entity inside a word; entities of the same type that touch the same word are merged, so the
    mapping never breaks an entity that the pipeline continued within a word.
    """
    from nerbatch.core.record import token_offsets

    offsets = token_offsets(words)
    labels = []
    for ent in entities:
        label = ent.get("entity_group") or ent.get("entity") or ""
        labels.append(label[2:] if label[:2] in ("B-", "I-") else label)
    group = list(range(len(entities)))

    def find(k: int) -> int:
        while group[k] != k:
            group[k] = group[group[k]]
            k = group[k]
        return k

    owner: list[int | None] = []
    for s, e in offsets:
        hits = [k for k, ent in enumerate(entities) if s < ent["end"] and ent["start"] < e]
        first = next((k for k in hits if entities[k]["start"] <= s < entities[k]["end"]), hits[0] if hits else None)
        if first is not None:
            for k in hits:
                if labels[k] == labels[first]:
                    group[find(k)] = find(first)
        owner.append(first)
    tags = []
    for i, own in enumerate(owner):
        if own is None:
            tags.append("O")
        elif i > 0 and owner[i - 1] is not None and find(owner[i - 1]) == find(own):
            tags.append("I-" + labels[own])
        else:
            tags.append("B-" + labels[own])
    return tags


def worker_pipeline(spec: dict) -> dict:
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    sents = read_gold(Path(spec["input"]))
    texts = [" ".join(w) for w, _ in sents]
    bs = spec["batch_size"]
    t0 = time.perf_counter()
    pipe = pipeline("token-classification", model=spec["model"], aggregation_strategy="first", device="cpu")
    load = time.perf_counter() - t0
    pipe(texts[:8], batch_size=bs)  # warm-up
    t0 = time.perf_counter()
    out = pipe(texts, batch_size=bs)
    wall = time.perf_counter() - t0
    preds = [entities_to_tags(w, ents) for (w, _), ents in zip(sents, out, strict=True)]
    lengths = [len(x) for x in pipe.tokenizer(texts)["input_ids"]]
    real = sum(lengths)
    padded = sum(max(lengths[i : i + bs]) * len(lengths[i : i + bs]) for i in range(0, len(lengths), bs))
    return {
        "wall_s": wall,
        "load_s": load,
        "f1": f1_of(zip([g for _, g in sents], preds, strict=True)),
        "padding_share": 1 - real / padded,
    }


def worker_loop(spec: dict) -> dict:
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    sents = read_gold(Path(spec["input"]))
    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForTokenClassification.from_pretrained(spec["model"]).eval()
    id2label = model.config.id2label
    load = time.perf_counter() - t0

    def predict_ner(words: list[str]) -> list[str]:  # what a notebook does
        enc = tok(words, is_split_into_words=True, return_tensors="pt", truncation=True)
        with torch.no_grad():
            logits = model(**enc).logits[0]
        ids = logits.argmax(-1).tolist()
        tags = ["O"] * len(words)
        seen = set()
        for i, w in enumerate(enc.word_ids()):
            if w is not None and w not in seen:
                seen.add(w)
                tags[w] = id2label[ids[i]]
        return tags

    for w, _ in sents[:8]:  # warm-up
        predict_ner(w)
    t0 = time.perf_counter()
    preds = [predict_ner(w) for w, _ in sents]
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "load_s": load, "f1": f1_of(zip([g for _, g in sents], preds, strict=True)), "padding_share": 0.0}


def head_nodes(path: str, num_labels: int) -> list[str]:
    """Names of the MatMul/Gemm nodes whose constant weight has ``num_labels`` outputs (the classifier)."""
    import onnx

    graph = onnx.load(path, load_external_data=False).graph
    dims = {init.name: list(init.dims) for init in graph.initializer}
    out = []
    for node in graph.node:
        if node.op_type in ("MatMul", "Gemm"):
            shapes = [dims[i] for i in node.input[1:2] if i in dims]
            if shapes and len(shapes[0]) == 2 and num_labels in shapes[0]:
                out.append(node.name)
    return out


def _ort_variant(model, name: str, token_types: bool = False):
    """ONNX Runtime candidates: nerbatch.tagging.int8's export, then a quantization/session variant.

    ``name`` is ``ort-fp32`` or ``ort-int8`` plus any of ``-perchannel`` (per-channel weight scales),
    ``-u8w`` (uint8 weights), ``-fp32head`` (the classifier stays fp32), ``-fused`` (onnxruntime.transformers optimizer first: SkipLayerNorm,
    BiasGelu), ``-nospin`` (ORT worker threads do not spin-wait).
    """
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nerbatch.tagging import int8 as q

    model = model.float().eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "fp32.onnx")
        q.export_onnx(model, path, token_types)
        if "-fused" in name:
            from onnxruntime.transformers.optimizer import optimize_model

            opt = optimize_model(path, model_type="bert", num_heads=model.config.num_attention_heads, hidden_size=model.config.hidden_size)
            path = os.path.join(tmp, "fused.onnx")
            opt.save_model_to_file(path)
        if name.startswith("ort-int8"):
            src, path = path, os.path.join(tmp, "int8.onnx")
            logging.getLogger().setLevel(logging.ERROR)
            quantize_dynamic(
                src,
                path,
                weight_type=QuantType.QUInt8 if "-u8w" in name else QuantType.QInt8,
                per_channel="-perchannel" in name,
                op_types_to_quantize=["MatMul", "Gemm"],
                nodes_to_exclude=head_nodes(src, model.config.num_labels) if "-fp32head" in name else None,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        return q.open_session(path, None, spin="-nospin" not in name)


def build_candidate(name: str, model, tokenizer, backend, folder: str, token_types: bool = False):
    """int8 candidates for --int8-candidates; each returns a back-end (nerbatch.tagging.backends) for the tagger:
    ``model``/``tokenizer``: the transformers model and tokenizer, ``backend``: the tagger's own."""
    from dataclasses import replace

    from nerbatch.tagging.backends import OnnxBackend, logits_of

    def onnx(session):
        return OnnxBackend(session=session, tokenizer=backend.tokenizer, labels=backend.labels, specials=backend.specials,
                           pad_id=backend.pad_id, max_width=backend.max_width)

    if name in ("nerbatch.tagging.int8", "nerbatch.tagging.int8:cached"):
        from nerbatch.model.cache import default_cache_dir
        from nerbatch.tagging.int8 import open_session, quantize_int8

        # ":cached" is what `nerbatch tag --precision int8` does (the disk cache); else prep_s includes
        # the export and the quantization
        cache = default_cache_dir() if name.endswith(":cached") else None
        path = quantize_int8(model, folder, tokenizer, backend.specials, cache, backend.max_width, token_types)
        return onnx(open_session(path))
    if name.startswith("ort-"):
        return onnx(_ort_variant(model, name, token_types))
    return replace(backend, forward=logits_of(_torch_candidate(name, model)), kind=name)


def _torch_candidate(name: str, model):
    import torch

    if name == "torch.ao.quantize_dynamic":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.quantized.engine = "x86" if "x86" in torch.backends.quantized.supported_engines else "fbgemm"
            return torch.ao.quantization.quantize_dynamic(model.float(), {torch.nn.Linear}, dtype=torch.qint8)
    if name.startswith("torchao"):
        if EXTRA_SITE.is_dir() and str(EXTRA_SITE) not in sys.path:
            sys.path.append(str(EXTRA_SITE))
        try:
            from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
        except ImportError:
            raise RuntimeError(f"torchao is not installed (pip install --target {EXTRA_SITE} torchao)") from None
        model = model.float()
        quantize_(model, Int8DynamicActivationInt8WeightConfig())
        if name == "torchao-int8+compile":
            model = torch.compile(model, dynamic=True)
        return model
    raise ValueError(f"unknown candidate {name!r}")


def worker_nerbatch(spec: dict) -> dict:
    """nerbatch in-process: Tagger + the tag service (nerbatch.tag_files), with the Tagger's forward counters."""
    from nerbatch.run.service import tag_files
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    t0 = time.perf_counter()
    opts = {"compile": spec["compile"]} if "compile" in spec else {}
    tagger = Tagger(spec["model"], TaggerOptions(precision=spec["precision"], context=False, **opts))
    tagger.load()  # the Tagger loads lazily (on the first sentence): load it here, untimed
    if spec.get("swap"):
        from nerbatch.model.loading import load_model

        tokenizer, model = load_model(spec["model"])
        tagger.backend = build_candidate(spec["swap"], model, tokenizer, tagger.backend, spec["model"],
                                         token_types=tagger.settings.casing == "shape")
    warm = Path(spec["output"] + ".warm.conll")
    write_subset(Path(spec["input"]), warm, 32)
    tag_files([str(warm)], str(warm) + ".out", tagger=tagger)  # warm-up
    prep = time.perf_counter() - t0
    best = None
    for _ in range(spec.get("passes", 1)):
        tagger.forward_seconds, tagger.tokens_seen, tagger.padded_tokens = 0.0, 0, 0
        t1 = time.perf_counter()
        tag_files([spec["input"]], spec["output"], tagger=tagger)
        wall = time.perf_counter() - t1
        run = {
            "wall_s": wall,
            "forward_s": tagger.forward_seconds,
            "tokens_seen": tagger.tokens_seen,
            "padded_tokens": tagger.padded_tokens,
        }
        if best is None or wall < best["wall_s"]:
            best = run
    best["load_s"] = prep
    best["padding_share"] = 1 - best["tokens_seen"] / best["padded_tokens"] if best["padded_tokens"] else None
    best["model_repr"] = tagger.backend.kind
    best["compiled"] = tagger.compiled
    return best


def worker_buckets(spec: dict) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from buckets import run_buckets

    return run_buckets(spec)


WORKERS = {"info": worker_info, "pipeline": worker_pipeline, "loop": worker_loop, "nerbatch": worker_nerbatch,
           "buckets": worker_buckets}


def worker_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    sys.path.insert(0, str(ROOT))
    res = WORKERS[spec["kind"]](spec)
    Path(spec["result"]).write_text(json.dumps(res), encoding="utf-8")


# --------------------------------------------------------------------------------------------- #
# the benchmark (parent)
# --------------------------------------------------------------------------------------------- #


FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def machine() -> dict:
    """The CPU, named as BENCHMARKS.md names it: model name, family/model, and which of the flags that
    decide bf16/int8 speed it has (read from /proc/cpuinfo; the machine kind changes between sessions)."""
    info: dict = {"cpu": platform.processor() or platform.machine(), "family": None, "model": None, "cpus": os.cpu_count()}
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "model name":
                    info["cpu"] = value
                elif key == "cpu family" and info["family"] is None:
                    info["family"] = value
                elif key == "model" and info["model"] is None:
                    info["model"] = value
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif not line.strip() and flags:
                    break
    except OSError:
        pass
    info["has"] = [f for f in FLAGS_OF_INTEREST if f in flags]
    info["lacks"] = [f for f in FLAGS_OF_INTEREST if f not in flags]
    fam = f" (family {info['family']} model {info['model']})" if info["family"] else ""
    info["summary"] = f"{info['cpu']}{fam}, {info['cpus']} CPUs; has {' '.join(info['has']) or '-'}; lacks {' '.join(info['lacks']) or '-'}"
    return info


def wait_builds(cache_dir: Path, timeout: float = 1800) -> float:
    """Wait until no background compile holds a build lock in ``cache_dir`` (nerbatch.tagging.compiled's
    ``.<entry>.building`` files); returns the seconds waited. A timed row must not share the cores
    with the build a previous row left running."""
    from nerbatch.tagging.compiled import build_running

    t0 = time.monotonic()
    keys = [lock.name[1:-len(".building")] for lock in cache_dir.glob(".*.building")]
    while time.monotonic() - t0 < timeout and any(build_running(str(cache_dir), k) for k in keys):
        time.sleep(0.5)
    return time.monotonic() - t0


@contextlib.contextmanager
def cold_cache(work: Path):
    """The environment of a run on an empty nerbatch cache (a new machine or model folder); on exit the
    background build it started is waited out and the cache removed."""
    cache_dir = Path(tempfile.mkdtemp(prefix="nerbatch-bench-cache-", dir=work))
    try:
        yield cache_dir, {**os.environ, "NERBATCH_CACHE_DIR": str(cache_dir)}
    finally:
        wait_builds(cache_dir)
        shutil.rmtree(cache_dir, ignore_errors=True)


def nerbatch_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "nerbatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nerbatch"]


def ensure_model(args, work: Path) -> Path:
    if args.model:
        given = Path(args.model)
        return given.resolve() if given.exists() else given  # children run in the repo root
    model = DEFAULT_MODEL
    if all((model / f).exists() for f in ("config.json", "nerbatch.json")):
        print(f"model: {model} (cached; delete it to retrain)")
        return model
    cmd = nerbatch_cmd() + ["train", "--train", str(args.data / "train.txt"), "--dev", str(args.data / "valid.txt")]
    cmd += TRAIN_ARGS + ["-o", str(model)]
    print("training the benchmark model (a few minutes on 2 cores):", " ".join(cmd), flush=True)
    if model.exists():
        shutil.rmtree(model)
    res = run_child(cmd, work / "train.log", timeout=6 * 3600)
    if res["rc"] != 0:
        raise SystemExit(f"training failed: {log_tail(work / 'train.log')}")
    print(f"  trained in {res['wall_s']:.0f} s")
    return model


def cli_features() -> dict:
    """What this nerbatch's `tag` command offers (precisions, a stats/log JSON option)."""
    import re

    out = subprocess.run(nerbatch_cmd() + ["tag", "--help"], capture_output=True, text=True, cwd=ROOT, timeout=300).stdout
    m = re.search(r"--precision \[([^\]]+)\]", out)
    precisions = m.group(1).split("|") if m else ["fp32"]
    stats = next((opt for opt in ("--log-json", "--stats-json") if opt in out), None)
    return {"precisions": precisions, "stats_option": stats, "compile": "--compile" in out}


def cpu_precisions(names) -> list[str]:
    return [p for p in names if p != "fp16"]  # fp16 needs a GPU


def stats_from_log(path: Path) -> dict:
    """Forward seconds, subword tokens and padded tokens of one run from the CLI's --log-json file.

    The file holds one JSON record per line (one per input file); the numbers are summed over them.
    Records without the keys (a CLI that does not log them yet) give an empty dict.
    """
    names = {
        "forward_s": ("forward_seconds", "forward_s"),
        "tokens_seen": ("tokens_seen", "subword_tokens"),
        "padded_tokens": ("padded_tokens",),
    }
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            records.extend(rec if isinstance(rec, list) else [rec])
    out = {}
    last = next((r for r in reversed(records) if isinstance(r, dict)), {})
    if "precision" in last:  # what ran (the last file's record): `auto` resolved, and the back-end at its end
        out["precision_used"], out["backend_at_end"] = last.get("precision"), last.get("backend")
    for key, keys in names.items():
        vals = [next((r[k] for k in keys if isinstance(r.get(k), (int, float))), None) for r in records if isinstance(r, dict)]
        vals = [v for v in vals if v is not None]
        if vals:
            out[key] = sum(vals)
    return out


class Bench:
    def __init__(self, args) -> None:
        self.args = args
        self.rows: list[dict] = []
        self.extra: dict = {}

    def row(self, name: str, fn, **meta) -> dict | None:
        print(f"  {name} ...", end="", flush=True)
        t0 = time.perf_counter()
        try:
            r = fn()
        except Exception as exc:  # noqa: BLE001 - one failed row must not stop the others
            msg = str(exc).strip().splitlines()
            reason = f"{type(exc).__name__}: {msg[0] if msg else ''}"[:400]
            print(f" failed: {reason}", flush=True)
            if self.args.verbose:
                traceback.print_exc()
            self.rows.append({"row": name, **meta, "error": reason})
            return None
        r = {"row": name, **meta, **r}
        self.rows.append(r)
        print(f" {time.perf_counter() - t0:.1f} s", flush=True)
        return r


def fill_rates(r: dict, info: dict | None, mult: int, base: dict) -> None:
    if r.get("error") or not r.get("wall_s"):
        return
    wall = r["wall_s"]
    r["sentences"] = base["sentences"] * mult
    r["words"] = base["words"] * mult
    r["subword_tokens"] = base["subword_tokens"] * mult
    r["sentences_per_s"] = r["sentences"] / wall
    r["words_per_s"] = r["words"] / wall
    r["tokens_per_s"] = r["subword_tokens"] / wall
    if r.get("forward_s") is not None:
        r["forward_share"] = r["forward_s"] / wall
    if info and info.get("ceiling_tokens_per_s"):
        r["ceiling_fraction"] = r["tokens_per_s"] / info["ceiling_tokens_per_s"]


def fmt(v, spec: str, scale: float = 1.0) -> str:
    return "-" if v is None else format(v * scale, spec)


def print_table(rows: list[dict]) -> None:
    head = f"{'row':44s} {'input':>5s} {'wall s':>7s} {'sent/s':>7s} {'words/s':>8s} {'tok/s':>8s} {'pad%':>5s} {'fwd%':>5s} {'RSS MB':>7s} {'F1':>6s} {'x pipe':>6s} {'x ceil':>6s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        if r.get("error"):
            print(f"{r['row']:44s} failed: {r['error']}")
            continue
        print(
            f"{r['row']:44s} {r.get('input', ''):>5s} {fmt(r.get('wall_s'), '7.2f')} {fmt(r.get('sentences_per_s'), '7.0f')} "
            f"{fmt(r.get('words_per_s'), '8.0f')} {fmt(r.get('tokens_per_s'), '8.0f')} {fmt(r.get('padding_share'), '5.1f', 100)} "
            f"{fmt(r.get('forward_share'), '5.1f', 100)} {fmt(r.get('peak_rss_mb'), '7.0f')} {fmt(r.get('f1'), '6.2f', 100)} "
            f"{fmt(r.get('vs_pipeline_best'), '6.2f')} {fmt(r.get('ceiling_fraction'), '6.3f')}"
        )


def main_bench(args) -> None:
    work = ROOT / "build" / ("bench-work-quick" if args.quick else "bench-work")
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    ncpu = os.cpu_count() or 1
    mach = machine()
    print(f"nerbatch benchmark{' (quick)' if args.quick else ''}: {mach['summary']}; load average {load0[0]:.2f}")
    if load0[0] > 0.5:
        print(f"WARNING: load average {load0[0]:.2f}: other work is running, timings are not reliable")
    model = ensure_model(args, work)
    limit = 300 if args.quick else None
    x1 = work / "test.x1.conll"
    n1 = write_subset(args.data / "test.txt", x1, limit)
    x2 = work / "test.x2.conll"
    write_repeated(x1, x2, 2)
    xn = work / f"test.x{args.repeat}.conll"
    write_repeated(x1, xn, args.repeat)
    empty = work / "empty.conll"
    empty.write_text("", encoding="utf-8")
    print(f"data: {x1} ({n1} sentences), x2, x{args.repeat}; model: {model}")
    bench = Bench(args)
    only = set(args.only.split(",")) if args.only else None

    def want(group: str) -> bool:
        return only is None or group in only

    # -- calibration and model size ----------------------------------------------------------------
    info = None
    try:
        info = run_worker({"kind": "info", "model": str(model), "input": str(x1)}, work, "info")
        attn = 4 * info["layers"] * info["mean_seq"] * info["hidden"]
        info["flops_per_token"] = 2 * info["non_embedding_params"] + attn
        info["flops_assumption"] = (
            f"FLOPs/token = 2 x non-embedding params ({info['non_embedding_params']:,}) + attention "
            f"4 x L({info['layers']}) x seq({info['mean_seq']:.1f}, mean subwords incl. specials) x hidden({info['hidden']}) "
            f"= {info['flops_per_token'] / 1e6:.2f} MFLOP"
        )
        info["ceiling_tokens_per_s"] = info["matmul_fp32_gflops"] * 1e9 / info["flops_per_token"]
        print(
            f"machine: fp32 matmul {info['matmul_fp32_gflops']:.0f} GFLOP/s, bf16 {info['matmul_bf16_gflops']:.0f} GFLOP/s "
            f"({info['torch_threads']} torch threads, {info['cpu_capability']})"
        )
        auto = info.get("precision_auto") or {}
        m = auto.get("measurement") or {}
        if m:
            rates = ", ".join(f"{p} {m['rates'][p]:.0f} ({m['ratios'][p]:.2f}x)" for p in m["rates"])
            print(f"precision auto: {auto['reason']}; model-shape matmuls GFLOP/s {rates}, "
                  f"{m['seconds']:.2f} s{' (from the cache)' if auto.get('cached') else ''}")
        print(f"model: {info['model_type']}, {info['params']:,} params; {info['flops_assumption']}")
        print(f"ceiling: {info['ceiling_tokens_per_s']:,.0f} subword tokens/s at the fp32 matmul rate")
        info["gemm_bound_fraction"] = info["model_gemms_fp32_gflops"] / info["matmul_fp32_gflops"]
        print(
            f"bound: this model's own Linear shapes (4096 rows) run at {info['model_gemms_fp32_gflops']:.0f} GFLOP/s in fp32 = "
            f"{info['gemm_bound_fraction']:.2f} of the matmul rate: no fp32 row can exceed that fraction of the ceiling"
        )
        base = {k: info[k] for k in ("sentences", "words", "subword_tokens")}
    except Exception as exc:  # noqa: BLE001
        print(f"calibration failed: {exc}")
        gold = read_gold(x1)
        base = {"sentences": len(gold), "words": sum(len(w) for w, _ in gold), "subword_tokens": None}
    if base["subword_tokens"] is None:
        base["subword_tokens"] = 0

    feats = {"precisions": ["fp32"], "stats_option": None}
    try:
        feats = cli_features()
    except Exception as exc:  # noqa: BLE001
        print(f"cannot read `nerbatch tag --help`: {exc}")
    try:
        from nerbatch.tagging.tagger import PRECISIONS as lib_precisions
    except Exception:  # noqa: BLE001
        lib_precisions = ("fp32",)
    print(f"nerbatch precisions: library {', '.join(cpu_precisions(lib_precisions))}; CLI {', '.join(cpu_precisions(feats['precisions']))}; "
          f"per-file stats option: {feats['stats_option'] or 'none (process rows have no forward share)'}")
    print("rows:")

    def mark(r, mult):
        if r is not None:
            fill_rates(r, info, mult, base)

    # -- HF pipeline ---------------------------------------------------------------------------------
    if want("pipeline"):
        mark(bench.row("hf pipeline, batch 1", lambda: run_worker(
            {"kind": "pipeline", "model": str(model), "input": str(x1), "batch_size": 1}, work, "pipeline-b1"), input="x1"), 1)
        sweep = []
        for bs in PIPELINE_BATCHES:
            r = bench.row(f"hf pipeline, batch {bs}", lambda bs=bs: run_worker(
                {"kind": "pipeline", "model": str(model), "input": str(x1), "batch_size": bs}, work, f"pipeline-b{bs}"), input="x1")
            mark(r, 1)
            sweep.append(bench.rows.pop())  # the sweep is kept apart; only the best becomes a row
        ok = [r for r in sweep if not r.get("error")]
        bench.extra["pipeline_batch_sweep"] = sweep
        if ok:
            best = dict(min(ok, key=lambda r: r["wall_s"]))
            best["row"] = f"hf pipeline, best batch ({best['row'].split()[-1]} of {'/'.join(map(str, PIPELINE_BATCHES))})"
            best["pipeline_best"] = True
            bench.rows.append(best)
            print("    sweep: " + ", ".join(f"b{r['row'].split()[-1]} {r['wall_s']:.2f}s" for r in ok))
        else:
            bench.rows.append({"row": "hf pipeline, best batch", "input": "x1", "error": "every batch size failed"})

    # -- plain loop -----------------------------------------------------------------------------------
    if want("loop"):
        mark(bench.row("plain loop, one sentence at a time", lambda: run_worker(
            {"kind": "loop", "model": str(model), "input": str(x1)}, work, "loop"), input="x1"), 1)

    # -- nerbatch in-process --------------------------------------------------------------------------
    if want("inproc"):
        precs = cpu_precisions(lib_precisions)
        swap_int8 = "int8" not in precs
        variants = []
        for p in precs + (["int8"] if swap_int8 else []):
            if p in ("fp32", "bf16") and feats.get("compile"):
                variants += [(p, False), (p, True)]
            else:
                variants.append((p, None))
        for p, compiled in variants:
            tag = p if compiled is None else f"{p}-{'compiled' if compiled else 'eager'}"
            spec = {"kind": "nerbatch", "model": str(model), "input": str(x1), "output": str(work / f"inproc-{tag}.conll"), "precision": p}
            label = f"nerbatch in-process {p}"
            if compiled is not None:
                spec["compile"] = compiled
                label += " compiled" if compiled else " eager"
            if p == "int8" and swap_int8:
                spec.update(precision="fp32", swap="nerbatch.tagging.int8:cached")
                label += " (swapped in)"

            def go(spec=spec):
                r = run_worker(spec, work, Path(spec["output"]).stem)
                r["f1"] = f1_of(read_tagged(Path(spec["output"])))
                return r

            mark(bench.row(label, go, input="x1"), 1)

    # -- nerbatch tag, whole process -----------------------------------------------------------------
    def tag_process(inp: Path, precision: str, tag: str, flags: tuple[str, ...] = (), env: dict | None = None):
        out = work / f"proc-{tag}.conll"
        cmd = nerbatch_cmd() + ["tag", str(inp), "-o", str(out), "--model", str(model), "--precision", precision, "--no-context", "-q", *flags]
        stats = work / f"proc-{tag}.stats.json"
        if feats["stats_option"]:
            cmd += [feats["stats_option"], str(stats)]
        if stats.exists():
            stats.unlink()
        res = run_child(cmd, work / f"proc-{tag}.log", env=env)
        if res["rc"] != 0:
            raise RuntimeError(f"exit {res['rc']}: {log_tail(work / f'proc-{tag}.log')}")
        res["f1"] = f1_of(read_tagged(out))
        res["command"] = " ".join(cmd)
        if stats.exists():
            s = stats_from_log(stats)
            res.update(s)
            if s.get("tokens_seen") and s.get("padded_tokens"):
                res["padding_share"] = 1 - s["tokens_seen"] / s["padded_tokens"]
        return res

    if want("process"):
        # every precision, `auto` first: a cold cache (a new machine or model folder: auto's one-time
        # measurement, the background compile of fp32/bf16, the int8 export), then the same cache warm
        # (after the build the cold run started has finished, outside the timing), then fp32/bf16
        # uncompiled. Each precision gets its own fresh cache folder.
        names = ["auto"] if "auto" in feats["precisions"] else []
        names += [p for p in cpu_precisions(feats["precisions"]) if p != "auto"]
        for p in names:
            with cold_cache(work) as (cache_dir, env):
                r = bench.row(f"nerbatch tag {p} (process, cold cache)", lambda p=p, env=env: tag_process(x2, p, f"{p}-x2-cold", env=env), input="x2")
                mark(r, 2)
                waited = wait_builds(cache_dir)
                if r is not None:
                    r["background_build_left_s"] = waited
                warm_in = work / "warm.conll"
                write_subset(x1, warm_in, 8)
                tag_process(warm_in, p, f"{p}-warmcache", env={**env, "NERBATCH_COMPILE_WAIT": "1"})
                r = bench.row(f"nerbatch tag {p} (process, warm cache)", lambda p=p, env=env: tag_process(x2, p, f"{p}-x2", env=env), input="x2")
                mark(r, 2)
                if p == "fp32":  # issue #15: well-formed (Viterbi) decoding against per-word argmax, same run
                    mark(bench.row("nerbatch tag fp32 (process, warm cache, --decode argmax)", lambda env=env: tag_process(
                        x2, "fp32", "fp32-x2-argmax", ("--decode", "argmax"), env=env), input="x2"), 2)
                if p in ("fp32", "bf16") and feats.get("compile"):
                    mark(bench.row(f"nerbatch tag {p} (process, --no-compile)", lambda p=p, env=env: tag_process(
                        x2, p, f"{p}-x2-eager", ("--no-compile",), env=env), input="x2"), 2)

    if want("firstrun"):
        # issue #12: a first run of a new model folder on the 60-sentence sample, at most 2x a --no-compile
        # run; both with an empty cache (so both make the one-time precision measurement)
        sample = ROOT / "sample_data" / "test.conll"
        first = {}
        for kind, flags in (("no_compile_s", ("--no-compile",)), ("default_s", ())):
            label = "--no-compile" if flags else "default: compiles in the background"
            with cold_cache(work) as (cache_dir, env):
                r = bench.row(f"first run, sample (60 sentences), {label}", lambda flags=flags, env=env, kind=kind: tag_process(
                    sample, "auto" if "auto" in feats["precisions"] else "fp32", kind, flags, env=env), input="sample")
                if r is not None:
                    r["background_build_left_s"] = wait_builds(cache_dir)
                    first[kind] = r["wall_s"]
        if len(first) == 2:
            bench.extra["first_run"] = {**first, "ratio": first["default_s"] / first["no_compile_s"], "target": 2.0}

    if want("buckets"):
        bench.row("shape buckets vs the dynamic package (forward only)", lambda: run_worker(
            {"kind": "buckets", "model": str(model), "input": str(x1), "work": str(work),
             "buckets": [int(b) for b in args.buckets.split(",")],
             "precisions": [p for p in args.bucket_precisions.split(",") if p in cpu_precisions(lib_precisions) or p == "int8"]},
            work, "buckets"), input="x1")
        r = bench.rows.pop()
        bench.extra["buckets"] = r

    if want("scaling"):
        r1 = bench.row("nerbatch tag fp32 (process) x1", lambda: tag_process(x1, "fp32", "fp32-x1"), input="x1")
        mark(r1, 1)
        rn = bench.row(f"nerbatch tag fp32 (process) x{args.repeat}", lambda: tag_process(xn, "fp32", f"fp32-x{args.repeat}"), input=f"x{args.repeat}")
        mark(rn, args.repeat)
        if r1 and rn:
            ratio = rn["peak_rss_mb"] / r1["peak_rss_mb"]
            bench.extra["rss_scaling"] = {"x1_mb": r1["peak_rss_mb"], f"x{args.repeat}_mb": rn["peak_rss_mb"], "ratio": ratio, "target": 1.1, "ok": ratio <= 1.1}
            bench.extra["time_scaling"] = {"x1_s": r1["wall_s"], f"x{args.repeat}_s": rn["wall_s"], "ratio": rn["wall_s"] / r1["wall_s"]}

    if want("startup"):
        def startup(cmd, log):
            res = run_child(cmd, work / log)
            if res["rc"] != 0:
                raise RuntimeError(f"exit {res['rc']}: {log_tail(work / log)}")
            return res

        bench.row("start-up: nerbatch --help", lambda: startup(nerbatch_cmd() + ["--help"], "help.log"), input="-")
        one = work / "one.conll"
        write_subset(x1, one, 1)
        bench.row("start-up: nerbatch tag <1 sentence>", lambda: startup(
            nerbatch_cmd() + ["tag", str(one), "-o", str(work / "one.out.conll"), "--model", str(model), "--no-context", "-q"], "one.log"), input="-")
        bench.row("start-up: nerbatch tag <empty file>", lambda: startup(
            nerbatch_cmd() + ["tag", str(empty), "-o", str(work / "empty.out.conll"), "--model", str(model), "--no-context", "-q"], "empty.log"), input="-")

    # -- ratios and output ----------------------------------------------------------------------------
    best = next((r for r in bench.rows if r.get("pipeline_best")), None)
    for r in bench.rows:
        if best and r.get("sentences_per_s"):
            r["vs_pipeline_best"] = r["sentences_per_s"] / best["sentences_per_s"]
    load1 = os.getloadavg()
    print()
    print_table(bench.rows)
    print()
    print("wall: library rows time the tagging call (model loaded, warmed up); process rows time the whole command.")
    print("pad%: padding share of the model's input; fwd%: share of wall time inside the model forward (Tagger.forward_seconds).")
    print("x pipe: sentences/s relative to the best HF pipeline row; x ceil: subword tokens/s over the fp32 matmul ceiling.")
    if info:
        print(info["flops_assumption"])
    targets = check_targets(bench.rows, bench.extra)
    if targets:
        bench.extra["targets"] = targets
        print("targets:")
        for t in targets:
            print(f"  {t['what']}: {t['measured']} (target {t['target']}): {'met' if t['met'] else 'NOT MET'}")
    bk = bench.extra.get("buckets")
    if bk and not bk.get("error"):
        print(f"shape buckets {bk['buckets']} vs the dynamic package, forward seconds over the x1 batches "
              f"(padded tokens dynamic {bk['padded_tokens_dynamic']:,}, buckets {bk['padded_tokens_buckets']:,}):")
        for v in bk["variants"]:
            build = f", build {v['build_s']:.1f} s" if v.get("build_s") is not None else ""
            print(f"  {v['precision']:5s} {v['variant']:30s} {v['forward_s']:7.2f} s{build}")
        for p, ratio in (bk.get("buckets_over_dynamic") or {}).items():
            print(f"  {p}: buckets {ratio:.2f}x the dynamic package's speed")
    elif bk:
        print(f"shape buckets: failed: {bk['error']}")
    if "rss_scaling" in bench.extra:
        s = bench.extra["rss_scaling"]
        print(f"RSS scaling: x{args.repeat} / x1 = {s['ratio']:.2f} (target <= 1.1: {'ok' if s['ok'] else 'NOT MET'})")
    if load1[0] > ncpu + 0.5:  # the rows themselves keep every core busy: only more than that is other work
        print(f"WARNING: load average {load1[0]:.2f} at the end (> {ncpu} CPUs + 0.5); other work may have skewed the timings")
    result = {
        "meta": {
            "quick": args.quick,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": ncpu,
            "machine": mach,
            "loadavg_start": load0,
            "loadavg_end": load1,
            "model": str(model),
            "data": str(x1),
            "repeat": args.repeat,
            "versions": versions(),
            "cli": feats,
        },
        "machine_and_model": info,
        "rows": bench.rows,
        **bench.extra,
    }
    out = Path(args.out) if args.out else (ROOT / "benchmarks" / "results" / ("bench-quick.json" if args.quick else "bench.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"written: {out}")


def check_targets(rows: list[dict], extra: dict) -> list[dict]:
    """Issue #12's and #15's targets from this run's rows (those that ran)."""
    by = {r["row"]: r for r in rows if not r.get("error")}
    out = []
    fp32 = by.get("nerbatch tag fp32 (process, warm cache)")
    for p, target in (("auto", 4.0), ("fp32", 2.5), ("int8", 4.0)):
        r = by.get(f"nerbatch tag {p} (process, warm cache)") or {}
        x = r.get("vs_pipeline_best")
        if x is not None:
            used = f", ran {r.get('precision_used')}" if p == "auto" else ""
            out.append({"what": f"{p} whole process vs the best HF pipeline{used}", "measured": f"{x:.2f}x",
                        "target": f">= {target}x", "met": x >= target})
            if p != "fp32" and fp32 and r.get("f1") is not None and fp32.get("f1") is not None:
                d = 100 * (r["f1"] - fp32["f1"])
                bound = 0.1 if p == "auto" else 0.3
                out.append({"what": f"{p} F1 against fp32", "measured": f"{d:+.2f}", "target": f"within {bound}", "met": abs(d) <= bound + 1e-9})
    fr = extra.get("first_run")
    if fr:
        out.append({"what": "first run of a new model folder on the sample vs --no-compile", "measured": f"{fr['ratio']:.2f}x "
                    f"({fr['default_s']:.2f} s vs {fr['no_compile_s']:.2f} s)", "target": "<= 2x", "met": fr["ratio"] <= 2.0})
    am = by.get("nerbatch tag fp32 (process, warm cache, --decode argmax)")
    if fp32 and am:
        slower = fp32["wall_s"] / am["wall_s"] - 1
        out.append({"what": "Viterbi decoding (default) against --decode argmax, fp32 whole process", "measured": f"{100 * slower:+.1f}% time",
                    "target": "within 5%", "met": slower <= 0.05})
    return out


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "tokenizers", "onnxruntime", "onnx", "onnxscript", "nerbatch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def main_candidates(args) -> None:
    """int8 back-ends on the first N test sentences, batched like nerbatch (the Tagger with its model swapped)."""
    work = ROOT / "build" / "bench-int8"
    work.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()
    print(f"int8 candidates, load average {load0[0]:.2f}")
    if load0[0] > 0.5:
        print(f"WARNING: load average {load0[0]:.2f}: other work is running, timings are not reliable")
    model = ensure_model(args, work)
    inp = work / f"test.first{args.sentences}.conll"
    n = write_subset(args.data / "test.txt", inp, args.sentences)
    gold = read_gold(inp)
    words = sum(len(w) for w, _ in gold)
    names = args.candidates.split(",")
    rows = []
    ref_pred = None
    for name in names:
        print(f"  {name} ...", end="", flush=True)
        out = work / f"{name}.conll"
        spec = {"kind": "nerbatch", "model": str(model), "input": str(inp), "output": str(out), "passes": args.passes}
        if name in ("fp32", "bf16"):
            spec["precision"] = name
        else:
            spec.update(precision="fp32", swap=name)
        try:
            r = run_worker(spec, work, name)
            tagged = read_tagged(out)
            r["f1"] = f1_of(tagged)
            preds = [p for _, ps in tagged for p in ps]
            if name == "fp32":
                ref_pred = preds
            if ref_pred is not None:
                r["agree_fp32"] = sum(a == b for a, b in zip(preds, ref_pred, strict=False)) / max(1, len(preds))
            r["words_per_s"] = words / r["wall_s"]
            r["sentences_per_s"] = n / r["wall_s"]
            rows.append({"candidate": name, **r})
            print(f" {r['wall_s']:.2f} s", flush=True)
        except Exception as exc:  # noqa: BLE001
            msg = str(exc).strip().splitlines()
            rows.append({"candidate": name, "error": f"{type(exc).__name__}: {msg[0] if msg else ''}"[:400]})
            print(f" failed: {rows[-1]['error']}", flush=True)
    ref = next((r for r in rows if r["candidate"] == "fp32" and not r.get("error")), None)
    print()
    print(f"first {n} CoNLL-2003 test sentences ({words} words), nerbatch batching (length-sorted, padded per batch), best of {args.passes}")
    print(f"{'candidate':28s} {'wall s':>7s} {'sent/s':>7s} {'x fp32':>6s} {'fwd s':>6s} {'prep s':>7s} {'RSS MB':>7s} {'F1':>6s} {'dF1':>6s} {'agree':>6s}")
    for r in rows:
        if r.get("error"):
            print(f"{r['candidate']:28s} failed: {r['error']}")
            continue
        r["speedup_vs_fp32"] = ref["wall_s"] / r["wall_s"] if ref else None
        r["f1_delta_points"] = 100 * (r["f1"] - ref["f1"]) if ref else None
        print(
            f"{r['candidate']:28s} {r['wall_s']:7.2f} {r['sentences_per_s']:7.0f} {fmt(r['speedup_vs_fp32'], '6.2f')} {r['forward_s']:6.2f} "
            f"{r['load_s']:7.1f} {r['peak_rss_mb']:7.0f} {100 * r['f1']:6.2f} {fmt(r['f1_delta_points'], '+6.2f')} {fmt(r.get('agree_fp32'), '6.4f')}"
        )
    print("prep s: Tagger load + building the candidate (export/quantize/compile) + a 32-sentence warm-up.")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / "int8-candidates.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": {"sentences": n, "words": words, "model": str(model), "loadavg_start": load0,
                                        "loadavg_end": os.getloadavg(), "versions": versions()}, "rows": rows}, indent=2), encoding="utf-8")
    print(f"written: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder (default: train build/bench-model once and reuse it)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="CoNLL-2003 folder with train.txt, valid.txt, test.txt")
    ap.add_argument("--repeat", type=int, default=10, help="the scaling row tags test repeated this many times")
    ap.add_argument("--out", help="JSON results (default benchmarks/results/bench.json, bench-quick.json with --quick)")
    ap.add_argument("--quick", action="store_true", help="smoke run on the first 300 test sentences")
    ap.add_argument("--only", help="comma list of row groups: pipeline,loop,inproc,process,firstrun,buckets,scaling,startup")
    ap.add_argument("--buckets", default="16,24,32,48,64,96,128,192,256,384,512", help="bucket widths (subwords) of the buckets group")
    ap.add_argument("--bucket-precisions", default="fp32,bf16,int8", help="precisions of the buckets group")
    ap.add_argument("--int8-candidates", action="store_true", help="compare int8 back-ends instead of the main table")
    ap.add_argument("--candidates", default="fp32,bf16,nerbatch.tagging.int8,ort-fp32,ort-int8,ort-int8-perchannel,ort-int8-u8w,ort-int8-fused,ort-int8-nospin,"
                    "torch.ao.quantize_dynamic,torchao-int8,torchao-int8+compile",
                    help="with --int8-candidates (ORT variants: ort-fp32 / ort-int8 + -perchannel -u8w -fp32head -fused -nospin)")
    ap.add_argument("--sentences", type=int, default=1000, help="with --int8-candidates: first N test sentences")
    ap.add_argument("--passes", type=int, default=2, help="with --int8-candidates: timed passes per candidate (best is kept)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))  # this checkout's nerbatch, even when it is not installed
    if args.worker:
        worker_main(args.worker)
        return
    args.data = args.data.resolve()
    if args.int8_candidates:
        main_candidates(args)
    else:
        main_bench(args)


if __name__ == "__main__":
    main()
