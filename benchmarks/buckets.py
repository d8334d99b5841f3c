"""Shape buckets against the dynamic-shape package (issue #12): the `buckets` group of bench.py.

Question: would a small set of statically shaped compiled graphs (the batch planner padding each batch
up to the nearest bucket) beat today's single AOTInductor package with dynamic batch and sequence axes?
A shape-specialised compile can fuse and vectorise more (one 128x32 batch once ran in 68 ms against 97 ms
dynamic, BENCHMARKS.md), but every bucket pads its batches, and every bucket is one more build.

How, in one process:
1. the real batches: ``nerbatch``'s Tagger tags the input (fp32, eager, no document context) with its
   back-end wrapped so that every model call's ``input_ids`` / ``attention_mask`` / token type arrays
   are recorded: the exact shapes and contents the planner makes;
2. for each precision (fp32, bf16 through AOTInductor; int8 through ONNX Runtime):
   * dynamic: the package ``nerbatch.tagging.compiled.build`` makes (what ``nerbatch tag`` runs), or for
     int8 ``nerbatch.tagging.int8.build_int8``'s model, fed each batch as it is;
   * buckets: for each bucket width W used, one graph exported with static shapes
     (rows = min(128, 4096 // W), the CPU planner's limits, by W) and AOTInductor-compiled. A
     bucket-aware planner is simulated: every recorded row goes to the narrowest bucket it fits, each
     bucket's rows (in the planner's length order) are cut into full batches of its shape, padded
     (pad ids, mask 0), and run there. int8 has no shape-specialised compile
     (ONNX Runtime plans kernels per call), so its bucket row only measures what the padding costs;
   * eager, for reference (fp32/bf16).
   Each variant runs every batch twice (best pass is kept); forward seconds only, no tokenising or
   decoding, so the rows compare the model calls alone. Build seconds are reported too: buckets cost
   one build each on a model's first run.
"""

from __future__ import annotations

import os
import tempfile
import time

DEFAULT_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)  # steps of 1.5x / 1.33x: at most 50% padding


class Recorder:
    """A back-end that records each batch it is given and passes it on."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.batches: list[tuple] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, ids, mask, rows, cols, types=None):
        self.batches.append((ids.copy(), mask.copy(), None if types is None else types.copy()))
        return self.inner.predict(ids, mask, rows, cols, types)


def record_batches(model: str, inp: str, work: str) -> list[tuple]:
    from nerbatch.run.service import tag_files
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    tagger = Tagger(model, TaggerOptions(precision="fp32", context=False, compile=False))
    tagger.load()
    rec = Recorder(tagger.backend)
    tagger.backend = rec
    tag_files([inp], os.path.join(work, "buckets.recorded.conll"), tagger=tagger)
    return rec.batches


def bucket_of(width: int, buckets: list[int]) -> int:
    return next((b for b in buckets if b >= width), width)


def bucket_rows(width: int) -> int:
    """Rows of a bucket's batches: the CPU planner's limits (padded tokens, rows) at that width."""
    from nerbatch.tagging.batching import DEFAULT_BATCH

    tokens, rows = DEFAULT_BATCH["cpu"]
    return max(1, min(rows, tokens // width))


def stack(rows: list[tuple], n_rows: int, width: int, pad_id: int) -> tuple:
    """One ``(n_rows, width)`` batch of single rows, padded (pad ids, mask 0, type 0)."""
    import numpy as np

    ids = np.full((n_rows, width), pad_id, dtype=np.int64)
    mask = np.zeros((n_rows, width), dtype=np.int64)
    typed = rows[0][2] is not None
    types = np.zeros((n_rows, width), dtype=np.int64) if typed else None
    for k, (i, m, t) in enumerate(rows):
        n = i.shape[1]
        ids[k, :n], mask[k, :n] = i[0], m[0]
        if typed:
            types[k, :n] = t[0]
    return ids, mask, types


def build_static(net, rows: int, width: int, token_types: bool, path: str) -> None:
    """An AOTInductor package of ``net`` for exactly ``(rows, width)`` inputs."""
    import contextlib
    import io
    import warnings

    import torch
    from torch._inductor import aoti_compile_and_package

    from nerbatch.tagging.int8 import LogitsOnly

    ids = torch.full((rows, width), 100, dtype=torch.long)
    mask = torch.ones_like(ids)
    if rows > 1:
        mask[1, width // 2:] = 0
    args = (ids, mask) + ((torch.zeros_like(ids),) if token_types else ())
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(LogitsOnly.wrap(net, token_types).eval(), args)
        aoti_compile_and_package(program, package_path=path)


def load_package(path: str):
    import torch

    loader = torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, -1)
    return loader.boxed_run


def time_batches(run, batches: list[tuple], passes: int = 2) -> float:
    best = float("inf")
    for _ in range(passes):
        t0 = time.perf_counter()
        for b in batches:
            run(b)
        best = min(best, time.perf_counter() - t0)
    return best


def run_buckets(spec: dict) -> dict:
    import torch

    from nerbatch.model import settings
    from nerbatch.model.loading import load_model
    from nerbatch.tagging import compiled
    from nerbatch.tagging.align import Specials
    from nerbatch.tagging.backends import logits_of
    from nerbatch.tagging.int8 import build_int8, open_session, run_session

    model = spec["model"]
    buckets = sorted(int(b) for b in spec.get("buckets", DEFAULT_BUCKETS))
    precisions = spec.get("precisions", ["fp32", "bf16", "int8"])
    work = tempfile.mkdtemp(prefix="nerbatch-buckets-", dir=spec.get("work"))
    batches = record_batches(model, spec["input"], work)
    token_types = batches[0][2] is not None
    tokenizer, net = load_model(model)
    pad_id = tokenizer.pad_token_id or 0
    # a bucket-aware planner: every row goes to the narrowest bucket it fits, and each bucket's rows
    # (in the length order the planner made) are cut into full batches of that bucket's shape
    groups: dict[int, list[tuple]] = {}
    pending: dict[int, list[tuple]] = {}
    for ids, mask, types in batches:
        for r in range(ids.shape[0]):
            n = int(mask[r].sum())
            w = bucket_of(n, buckets)
            pending.setdefault(w, []).append((ids[r:r + 1, :n], mask[r:r + 1, :n], None if types is None else types[r:r + 1, :n]))
            if len(pending[w]) == bucket_rows(w):
                groups.setdefault(w, []).append(stack(pending.pop(w), bucket_rows(w), w, pad_id))
    for w, rows in pending.items():
        groups.setdefault(w, []).append(stack(rows, bucket_rows(w), w, pad_id))
    used = sorted(groups)
    real = int(sum(b[1].sum() for b in batches))
    padded_dynamic = int(sum(b[0].size for b in batches))
    padded_buckets = int(sum(g[0].size for gs in groups.values() for g in gs))
    out = {
        "batches": len(batches), "buckets": used, "real_tokens": real,
        "padded_tokens_dynamic": padded_dynamic, "padded_tokens_buckets": padded_buckets,
        "batches_per_bucket": {str(w): len(gs) for w, gs in groups.items()},
        "bucket_shapes": {str(w): [bucket_rows(w), w] for w in used},
        "torch_threads": torch.get_num_threads(), "variants": [],
    }
    print(f"{len(batches)} batches, widths {min(b[0].shape[1] for b in batches)}-{max(b[0].shape[1] for b in batches)}; "
          f"buckets {used}; padded tokens dynamic {padded_dynamic:,}, buckets {padded_buckets:,} (real {real:,})", flush=True)

    def torch_args(b):
        args = [torch.from_numpy(b[0]), torch.from_numpy(b[1])]
        if b[2] is not None:
            args.append(torch.from_numpy(b[2]))
        return args

    def add(precision: str, variant: str, seconds: float, build_s: float | None, tokens: int, logits_check=None) -> None:
        row = {"precision": precision, "variant": variant, "forward_s": seconds, "build_s": build_s,
               "padded_tokens": tokens, "tokens_per_s": real / seconds}
        if logits_check is not None:
            row["max_abs_diff_vs_dynamic"] = logits_check
        out["variants"].append(row)
        print(f"  {precision:5s} {variant:28s} forward {seconds:7.2f} s"
              + (f", build {build_s:6.1f} s" if build_s is not None else ""), flush=True)

    for precision in precisions:
        if precision in ("fp32", "bf16"):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
            net_p = net.to(dtype).eval()
            # eager
            eager = logits_of(net_p)  # what `nerbatch tag --no-compile` runs
            with torch.inference_mode():
                add(precision, "eager", time_batches(lambda b, eager=eager: eager(*torch_args(b)), batches), None, padded_dynamic)
            # dynamic package, as nerbatch tag builds it
            cache_dir = os.path.join(work, f"cache-{precision}")
            t0 = time.perf_counter()
            entry = compiled.build(model, precision, tokenizer, net_p, Specials.of(tokenizer), cache_dir,
                                   max_width=min(512, settings.read_json(os.path.join(model, "config.json")).get("max_position_embeddings") or 512),
                                   token_types=token_types)
            build_dyn = time.perf_counter() - t0
            dyn = compiled.CompiledModel(entry.package, entry.meta)
            with torch.inference_mode():
                add(precision, "dynamic package", time_batches(lambda b, dyn=dyn: dyn(*torch_args(b)), batches), build_dyn, padded_dynamic)
            # static buckets
            runs, build_total = {}, 0.0
            for w in used:
                path = os.path.join(work, f"static-{precision}-{w}.pt2")
                t0 = time.perf_counter()
                build_static(net_p, bucket_rows(w), w, token_types, path)
                build_total += time.perf_counter() - t0
                runs[w] = load_package(path)
            flat = [(w, g) for w, gs in groups.items() for g in gs]
            with torch.inference_mode():
                # the same logits as the dynamic package, on one batch (a check that the buckets are right)
                w0, g0 = flat[0]
                a = runs[w0](torch_args(g0))[0]
                b = dyn(*torch_args(g0))
                diff = float((a.float() - b.float())[torch.from_numpy(g0[1]).bool()].abs().max())
                secs = time_batches(lambda wg, runs=runs: runs[wg[0]](torch_args(wg[1])), flat)
            add(precision, f"static buckets ({len(used)} graphs)", secs, build_total, padded_buckets, diff)
            net = net_p.float()
        elif precision == "int8":
            path = os.path.join(work, "model.int8.onnx")
            t0 = time.perf_counter()
            build_int8(net.float(), path, token_types)
            build_s = time.perf_counter() - t0
            session = open_session(path)
            add("int8", "dynamic (ONNX Runtime)", time_batches(lambda b, s=session: run_session(s, *b), batches), build_s, padded_dynamic)
            flat = [g for gs in groups.values() for g in gs]
            add("int8", "padded to the buckets", time_batches(lambda b, s=session: run_session(s, *b), flat), None, padded_buckets)
    by = {(v["precision"], v["variant"].split(" (")[0]): v for v in out["variants"]}
    for p in precisions:
        dyn = by.get((p, "dynamic package")) or by.get((p, "dynamic"))
        st = by.get((p, "static buckets")) or by.get((p, "padded to the buckets"))
        if dyn and st:
            out.setdefault("buckets_over_dynamic", {})[p] = dyn["forward_s"] / st["forward_s"]
    return out
