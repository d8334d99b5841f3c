"""`--precision auto` (nerbatch.tagging.precision): the measured choice is cached, keyed by CPU and torch
version, rebuilt when damaged, recorded in the manifest as the precision actually used, and never
overrides an explicit precision. The measurement is replaced by a fake (or the
NERBATCH_PRECISION_RATES hook) except in one test, which runs it for real and checks only that it is
bounded and well formed, not how fast this CPU is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.run.manifest import load_manifest
from nerbatch.tagging import precision
from nerbatch.tagging.precision import MARGIN, Measurement, choose, measure, measured, resolve_precision
from nerbatch.tagging.tagger import Tagger, TaggerOptions

from ..conftest import SAMPLE


class FakeMeasure:
    """A stand-in for nerbatch.tagging.precision.measure that counts its calls."""

    def __init__(self, **ratios: float) -> None:
        self.ratios = {"fp32": 1.0, **ratios}
        self.calls = 0

    def __call__(self, hidden, intermediate, *, threads=None, int8=True, **_) -> Measurement:
        self.calls += 1
        ratios = {p: r for p, r in self.ratios.items() if int8 or p != "int8"}
        return Measurement({p: 100.0 * r for p, r in ratios.items()}, ratios, {p: 256 for p in ratios},
                           hidden, intermediate, threads or 2, 0.01)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(folder))
    monkeypatch.delenv(precision.RATES_ENV, raising=False)
    return folder


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "precision").glob("*.json"))


def cpu(opts: TaggerOptions = TaggerOptions()) -> TaggerOptions:
    return replace(opts, device="cpu")


def test_choice_is_cached_and_read_back(tiny_model, cache):
    fake = FakeMeasure(bf16=3.1, int8=1.6)
    opts, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert (opts.precision, choice.precision, choice.requested) == ("bf16", "bf16", "auto")
    assert choice.reason == "bf16 (auto: 3.1x fp32 here; no F1 record for this model: 0.09 F1 on the reference model)"
    assert not choice.cached
    [entry] = _entries(cache)
    data = json.loads(entry.read_text(encoding="utf-8"))
    assert data["key"]["hidden"] == 32 and data["key"]["intermediate"] == 64  # the tiny model's config
    assert data["measurement"]["rates"] == {"fp32": 100.0, "bf16": 310.0, "int8": 160.0}
    mtime = entry.stat().st_mtime_ns
    time.sleep(0.01)
    opts2, again = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert fake.calls == 1 and again.cached and again.precision == "bf16"
    assert again.rates == choice.rates and again.ratios == choice.ratios
    assert entry.stat().st_mtime_ns == mtime  # read, not rewritten


def test_keyed_by_cpu_and_torch_version(tiny_model, cache, monkeypatch):
    fake = FakeMeasure(bf16=3.0)
    resolve_precision(tiny_model, cpu(), measure_fn=fake)
    real_key = precision.machine_key
    for field, value in (("cpu", "Another CPU"), ("cpu_flags", "0123456789ab"), ("torch", "0.0.1")):
        monkeypatch.setattr(precision, "machine_key", lambda *a, f=field, v=value: {**real_key(*a), f: v})
        resolve_precision(tiny_model, cpu(), measure_fn=fake)
        resolve_precision(tiny_model, cpu(), measure_fn=fake)  # the new key's entry is read back in turn
    assert fake.calls == 4 and len(_entries(cache)) == 4
    monkeypatch.setattr(precision, "machine_key", real_key)
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert choice.cached and fake.calls == 4
    resolve_precision(tiny_model, cpu(TaggerOptions(threads=1)), measure_fn=fake)  # threads are part of the key
    assert fake.calls == 5


@pytest.mark.parametrize("damage", [
    "not json {",
    "[]",
    json.dumps({"key": {}, "measurement": {}}),  # another key
    "KEY:{}",  # the right key, no measurement
    "KEY:" + json.dumps({"rates": {"bf16": 3.0}, "ratios": {"bf16": 3.0}, "rows": {}, "hidden": 32,
                         "intermediate": 64, "threads": 2, "seconds": 0.1}),  # no fp32 rate
    "KEY:" + json.dumps({"rates": {"fp32": "fast"}, "ratios": {"fp32": 1}, "rows": {}, "hidden": 32,
                         "intermediate": 64, "threads": 2, "seconds": 0.1}),  # not a number
])
def test_damaged_entry_is_rebuilt(tiny_model, cache, damage):
    fake = FakeMeasure(bf16=3.0)
    resolve_precision(tiny_model, cpu(), measure_fn=fake)
    [entry] = _entries(cache)
    if damage.startswith("KEY:"):
        key = json.loads(entry.read_text(encoding="utf-8"))["key"]
        damage = json.dumps({"key": key, "measurement": json.loads(damage[4:])})
    entry.write_text(damage, encoding="utf-8")
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert fake.calls == 2 and not choice.cached and choice.precision == "bf16"
    assert json.loads(entry.read_text(encoding="utf-8"))["measurement"]["rates"]["fp32"] == 100.0
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert fake.calls == 2 and choice.cached


def test_choice_rules():
    m = FakeMeasure(bf16=0.3, int8=1.7)(384, 1536)
    assert choose(m) == ("int8", "int8 (auto: 1.70x fp32 here; no F1 record for this model: 0.05 F1 on the reference model)")
    assert choose(m, ("bf16",))[0] == "fp32"  # int8 not a candidate (not installed, or --compile)
    slow = FakeMeasure(bf16=MARGIN - 0.05, int8=1.0)(384, 1536)
    p, why = choose(slow)
    assert p == "fp32" and why.startswith("fp32 (auto: nothing beats it by 1.15x here: bf16 1.10x, int8 1.00x")
    assert choose(FakeMeasure()(384, 1536))[0] == "fp32"
    assert set(precision.F1_COST) >= {"bf16", "int8"} and all(v <= precision.F1_BOUND for v in precision.F1_COST.values())


def test_int8_needs_onnxruntime_vnni_and_no_compile(tiny_model, cache, monkeypatch):
    fake = FakeMeasure(bf16=0.3, int8=1.7)
    monkeypatch.setattr(precision, "int8_exact", lambda: True)
    _, choice = resolve_precision(tiny_model, cpu(TaggerOptions(compile=True)), measure_fn=fake)
    assert choice.precision == "fp32"  # int8 is never compiled
    monkeypatch.setattr(precision, "int8_available", lambda: False)
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert choice.precision == "fp32" and "int8" not in choice.rates
    monkeypatch.setattr(precision, "int8_available", lambda: True)
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert choice.precision == "int8"
    monkeypatch.setattr(precision, "int8_exact", lambda: False)  # AVX2 only: ORT's int8 products saturate
    _, choice = resolve_precision(tiny_model, cpu(), measure_fn=fake)
    assert choice.precision == "fp32" and "int8 1.70x but no VNNI" in choice.reason


def test_explicit_precision_is_never_overridden(tiny_model, cache):
    fake = FakeMeasure(bf16=5.0, int8=5.0)
    for p in ("fp32", "bf16", "int8"):
        opts, choice = resolve_precision(tiny_model, cpu(TaggerOptions(precision=p)), measure_fn=fake)
        assert opts.precision == choice.precision == choice.reason == p
    assert fake.calls == 0 and not _entries(cache)


def test_tagger_resolves_auto_by_default(tiny_model, cache, monkeypatch):
    monkeypatch.setenv(precision.RATES_ENV, json.dumps({"fp32": 100, "bf16": 250}))
    assert TaggerOptions().precision == "auto"
    t = Tagger(tiny_model, TaggerOptions(device="cpu", compile=False))
    assert t.options.precision == "bf16" and t.precision_choice.reason.startswith("bf16 (auto: 2.5x fp32 here; ")
    assert t.precision_choice.measurement.source == precision.RATES_ENV and not _entries(cache)  # hook: not cached
    t = Tagger(tiny_model, TaggerOptions(device="cpu", precision="fp32", compile=False))
    assert t.options.precision == "fp32"


def _tag(tiny_model, out: Path, *flags: str):
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model,
                                   "--no-compile", *flags], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


def test_manifest_records_the_precision_used(tiny_model, cache, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.RATES_ENV, json.dumps({"fp32": 100, "bf16": 310}))
    res = _tag(tiny_model, tmp_path / "auto.conll")
    assert load_manifest(str(tmp_path / "auto.conll"))["fingerprint"]["options"]["precision"] == "bf16"
    assert "; precision bf16 (auto: 3.1x fp32 here; no F1 record" in res.stderr.strip().splitlines()[-1]  # the summary line
    res = _tag(tiny_model, tmp_path / "bf16.conll", "--precision", "bf16")
    assert (tmp_path / "bf16.conll").read_bytes() == (tmp_path / "auto.conll").read_bytes()
    # the same run spelled out: --resume finds the auto output complete
    res = _tag(tiny_model, tmp_path / "auto.conll", "--precision", "bf16", "--resume")
    assert "already complete" in res.stderr


def test_fp32_is_one_option_away(tiny_model, cache, tmp_path, monkeypatch):
    monkeypatch.setenv(precision.RATES_ENV, json.dumps({"fp32": 100, "bf16": 900, "int8": 900}))
    res = _tag(tiny_model, tmp_path / "fp32.conll", "--precision", "fp32")
    assert load_manifest(str(tmp_path / "fp32.conll"))["fingerprint"]["options"]["precision"] == "fp32"
    assert re.search(r"; precision fp32(;|$)", res.stderr.strip().splitlines()[-1])
    assert not _entries(cache)  # nothing measured


def test_cached_choice_needs_no_torch(tiny_model, cache, tmp_path):
    """A run that finds its choice cached reads it without importing torch (a cached int8 run starts
    with neither torch nor transformers)."""
    if not precision.int8_available():
        pytest.skip("onnxruntime is not installed")
    measured(tiny_model, measure_fn=FakeMeasure(int8=2.0))
    code = (
        "import sys\nfrom nerbatch.tagging.precision import resolve_precision\nfrom nerbatch.tagging.tagger import TaggerOptions\n"
        f"o, c = resolve_precision({tiny_model!r}, TaggerOptions(device='auto'))\n"
        "print(c.precision, c.cached, 'torch' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != precision.RATES_ENV}
    env["NERBATCH_CACHE_DIR"] = str(cache)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    expected = "int8" if precision.int8_exact() else "fp32"
    assert proc.stdout.strip().splitlines()[-1] == f"{expected} True False"


def test_help_does_not_import_torch():
    code = "import sys; from nerbatch.cli import cli\ntry:\n    cli(['tag', '--help'])\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules, 'transformers' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "auto" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "False False"


def test_train_bf16_default_follows_the_measurement(tiny_model, cache, monkeypatch):
    import torch

    from nerbatch.training.train import bf16_is_fast

    if torch.cuda.is_available():
        pytest.skip("on a GPU the bf16 default is the GPU's bf16 support")
    monkeypatch.setenv(precision.RATES_ENV, json.dumps({"fp32": 100, "bf16": 300}))
    assert bf16_is_fast(tiny_model)
    monkeypatch.setenv("NERBATCH_CACHE_DIR", str(cache / "other"))
    monkeypatch.setenv(precision.RATES_ENV, json.dumps({"fp32": 100, "bf16": 20}))
    assert not bf16_is_fast(tiny_model)


def test_real_measurement_is_bounded(cache):
    """The real thing on this CPU, on MiniLM's widths: bounded in time, every rate measured (no
    threshold on how fast this machine is)."""
    import torch  # noqa: F401 - imported by any tagging run before it measures; not part of the bound

    t0 = time.perf_counter()
    m = measure(384, 1536)
    wall = time.perf_counter() - t0
    # 3 precisions x 0.3 s of timing, plus set-up and warm-up calls; generous for a loaded 2-core machine
    assert wall < 10, wall
    assert m.source == "measured" and m.hidden == 384 and m.threads >= 1
    assert m.ratios["fp32"] == 1.0 and m.rates["fp32"] > 0
    expect = {"fp32", "bf16"} | ({"int8"} if precision.int8_available() else set())
    assert set(m.rates) | set(m.skipped) == expect and set(m.ratios) == set(m.rates)
    for p in m.rates:
        assert m.rates[p] > 0 and m.ratios[p] > 0
        assert m.rows[p] in {16 << k for k in range(8)}  # 16 ... 2048 rows
    p, reason = choose(m)
    assert p in ("fp32", "bf16", "int8") and reason.startswith(f"{p} (auto: ")


def test_int8_graph_is_what_quantize_dynamic_makes(tmp_path):
    """The measured int8 graph has the operators ONNX Runtime's quantize_dynamic writes for
    nerbatch.tagging.int8's recipe, and a session with the int8 back-end's settings."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from nerbatch.tagging.int8 import open_session

    rng = np.random.default_rng(0)
    ws = [("w_hh", rng.standard_normal((8, 8)).astype(np.float32)), ("w_up", rng.standard_normal((8, 16)).astype(np.float32)),
          ("w_down", rng.standard_normal((16, 8)).astype(np.float32))]
    mine = onnx.load_from_string(precision.int8_gemm_graph(ws, 8))
    onnx.checker.check_model(mine, full_check=True)
    names = ["x", "a", "b", "y"]
    nodes = [helper.make_node("MatMul", [names[k], w], [names[k + 1]]) for k, (w, _) in enumerate(ws)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", 8])],
                              initializer=[numpy_helper.from_array(w, n) for n, w in ws])
    src = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    quantize_dynamic(str(src), str(tmp_path / "g8.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Gemm"])
    theirs = onnx.load(str(tmp_path / "g8.onnx"))
    assert [n.op_type for n in mine.graph.node] == [n.op_type for n in theirs.graph.node]

    def inits(m):
        return sorted((i.data_type, tuple(i.dims)) for i in m.graph.initializer)

    assert inits(mine) == inits(theirs)
    path = tmp_path / "mine.onnx"
    path.write_bytes(precision.int8_gemm_graph(ws, 8))
    x = rng.standard_normal((4, 8)).astype(np.float32)
    ref = x @ ws[0][1] @ ws[1][1] @ ws[2][1]
    got = precision.ort_session(str(path), 1).run(["y"], {"x": x})[0]
    want = precision.ort_session(str(tmp_path / "g8.onnx"), 1).run(["y"], {"x": x})[0]
    assert np.array_equal(got, want)  # the same weights, scales and kernels: the same numbers
    if precision.int8_exact():
        assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
    a, b = precision.ort_session(str(path), 2).get_session_options(), open_session(str(path), 2).get_session_options()
    for attr in ("intra_op_num_threads", "inter_op_num_threads", "graph_optimization_level", "execution_mode"):
        assert getattr(a, attr) == getattr(b, attr), attr
    assert a.get_session_config_entry("session.intra_op.allow_spinning") == b.get_session_config_entry("session.intra_op.allow_spinning")


def test_cuda_without_a_gpu_is_left_to_the_loader(tiny_model, cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    opts, choice = resolve_precision(tiny_model, TaggerOptions(device="cuda"))
    assert opts.precision == "fp32" and "no CUDA" in choice.reason and not _entries(cache)


# -- a busy machine: interleaved trials, no load average ------------------------------------------------


def test_interleaved_trials_hold_when_the_machine_is_busy_for_a_while():
    """Other work slows every call 4x for the first 0.3 s. Timed one after the other, the first
    precision would carry all of it; taking turns and keeping each one's shortest call gives the
    true ratio (fp32 8 ms a call, int8 4 ms: 2x)."""
    start = time.perf_counter()

    def sleeper(ms: float):
        def run(rows: int):
            busy = time.perf_counter() - start < 0.3
            time.sleep(ms / 1000 * (4 if busy else 1))
        return run

    best, turns = precision.interleaved({"fp32": sleeper(8), "int8": sleeper(4)}, rows=1, deadline=0.3)
    assert min(turns.values()) >= precision.MIN_TRIALS
    assert 1.6 < best["fp32"] / best["int8"] < 2.4
    assert best["fp32"] < 0.016  # not a call of the busy spell


def test_a_high_load_average_does_not_force_fp32(tiny_model, cache, monkeypatch):
    """Other processes (even at the lowest priority) raise the load average: the choice follows the
    interleaved measurement all the same."""
    monkeypatch.setattr(os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    _, choice = resolve_precision(tiny_model, cpu())
    m = choice.measurement
    assert m.source == "measured" and "busy" not in choice.reason
    exact = precision.int8_available() and precision.int8_exact()
    excluded = {"int8": "no VNNI (int8 products saturate)"} if precision.int8_available() and not exact else {}
    assert (choice.precision, choice.reason) == choose(m, ("bf16", "int8") if exact else ("bf16",), excluded)
    assert len(set(m.rows.values())) == 1  # every precision timed at the same block of rows
    assert all(m.trials[p] >= 1 for p in m.rates)


# -- the F1 bound on the model's own evidence ------------------------------------------------------------


def _with_record(tiny_model: str, folder: Path, f1: dict | None) -> str:
    import shutil

    shutil.copytree(tiny_model, folder)
    if f1 is not None:
        (folder / "nerbatch.json").write_text(json.dumps({precision.F1_RECORD: {"dev": "dev.conll", "sentences": 9, "f1": f1}}))
    return str(folder)


def test_recorded_dev_f1_decides_the_bound(tiny_model, cache, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "int8_exact", lambda: True)
    monkeypatch.setattr(precision, "int8_available", lambda: True)
    fake = FakeMeasure(bf16=1.5, int8=2.0)
    costly = _with_record(tiny_model, tmp_path / "costly", {"fp32": 80.0, "bf16": 80.05, "int8": 79.8})
    _, choice = resolve_precision(costly, cpu(), measure_fn=fake)
    assert choice.reason == "bf16 (auto: 1.50x fp32 here; F1 +0.05 against fp32 on this model's dev set)"
    fine = _with_record(tiny_model, tmp_path / "fine", {"fp32": 80.0, "bf16": 79.5, "int8": 79.95})
    _, choice = resolve_precision(fine, cpu(), measure_fn=fake)
    assert choice.reason == "int8 (auto: 2.0x fp32 here; F1 -0.05 against fp32 on this model's dev set)"
    neither = _with_record(tiny_model, tmp_path / "neither", {"fp32": 80.0, "bf16": 79.0, "int8": 79.0})
    _, choice = resolve_precision(neither, cpu(), measure_fn=fake)
    assert choice.precision == "fp32"
    assert "int8 2.0x but F1 -1.00 against fp32 on this model's dev set, over the 0.1 bound" in choice.reason
    # no record (int8 not measured at training time, or no record at all): the reference model's cost, said so
    partial = _with_record(tiny_model, tmp_path / "partial", {"fp32": 80.0, "bf16": 79.0})
    _, choice = resolve_precision(partial, cpu(), measure_fn=fake)
    assert choice.reason == "int8 (auto: 2.0x fp32 here; no F1 record for this model: 0.05 F1 on the reference model)"
    _, choice = resolve_precision(_with_record(tiny_model, tmp_path / "none", None), cpu(), measure_fn=fake)
    assert choice.precision == "int8" and "no F1 record for this model" in choice.reason


def test_train_records_the_dev_f1_of_each_precision(tiny_encoder, cache, tmp_path, monkeypatch):
    from nerbatch.evaluation.evaluate import evaluate_model

    out = tmp_path / "model"
    res = CliRunner().invoke(cli, ["train", "--train", str(SAMPLE / "train.conll"), "--dev", str(SAMPLE / "dev.conll"),
                                   "-o", str(out), "--base-model", tiny_encoder, "--epochs", "1", "--every", "4",
                                   "--lr", "5e-3", "--no-bf16", "--precision-check"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    record = json.loads((out / "nerbatch.json").read_text())[precision.F1_RECORD]
    assert record["dev"] == str(SAMPLE / "dev.conll") and record["sentences"] > 0
    runnable = precision.int8_available() and precision.int8_exact()
    assert set(record["f1"]) == {"fp32", "bf16"} | ({"int8"} if runnable else set())
    assert set(record["left_out"]) == ({"int8"} - set(record["f1"]))
    assert "dev F1 by precision (recorded for --precision auto): fp32 " in res.stderr
    for p in ("fp32", "bf16"):  # the numbers `evaluate --model` gives in that precision
        r = evaluate_model(str(out), [str(SAMPLE / "dev.conll")], tagger_options=TaggerOptions(device="cpu", precision=p, compile=False),
                           bootstrap=0)
        assert record["f1"][p] == round(100 * r["overall"]["f1"], 4)
    # auto reads the record for this model
    _, choice = resolve_precision(str(out), cpu(), measure_fn=FakeMeasure(bf16=3.0))
    diff = record["f1"]["bf16"] - record["f1"]["fp32"]
    if abs(diff) <= precision.F1_BOUND:
        assert choice.reason == f"bf16 (auto: 3.0x fp32 here; F1 {diff:+.2f} against fp32 on this model's dev set)"
    else:
        assert choice.precision == "fp32" and "over the 0.1 bound" in choice.reason


# -- the int8 cache entry and the window -----------------------------------------------------------------


def test_int8_entry_takes_any_window_the_model_does(tiny_model, cache, capsys):
    """The first int8 run used --max-length 32; a later one asks for the model's 64: the cached
    entry serves it (the ONNX graph has a dynamic sequence axis). An entry recorded as narrower than
    asked (made by an older nerbatch) is rebuilt, not refused."""
    if not precision.int8_available():
        pytest.skip("onnxruntime, onnx or onnxscript is not installed")
    from nerbatch.io import read

    def int8(max_length: int) -> Tagger:
        t = Tagger(tiny_model, TaggerOptions(device="cpu", precision="int8", max_length=max_length, verbose=True))
        t.load()
        return t

    assert int8(32).backend.max_width == 64
    [meta] = [json.loads(p.read_text()) for p in cache.glob("int8-*/meta.json")]
    assert meta["max_width"] == 64
    wide = int8(64)
    assert wide.backend.kind == "int8" and wide.max_length == 64
    assert "rebuilding" not in capsys.readouterr().err  # served by the entry built for 32
    sents = list(wide.tag_sentences(read(str(SAMPLE / "test.conll"))))
    assert sents and all(len(s.pred) == len(s.tokens) for s in sents)
    [meta_file] = cache.glob("int8-*/meta.json")
    meta_file.write_text(json.dumps({**meta, "max_width": 32}))  # as the first run recorded it before
    again = int8(64)
    assert "int8 model" in capsys.readouterr().err and again.backend.max_width == 64
    assert json.loads(next(cache.glob("int8-*/meta.json")).read_text())["max_width"] == 64
    assert [s.pred for s in again.tag_sentences(read(str(SAMPLE / "test.conll")))] == [s.pred for s in sents]
