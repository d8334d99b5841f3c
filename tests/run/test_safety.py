"""Regression tests from the adversarial run (issue #16): code execution, data loss, locks, signals,
option checks. Each failed on the code before its fix."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.run.manifest import OutputLock

from ..conftest import SAMPLE

EVIL_CODE = """
import pathlib
pathlib.Path(__file__).with_name("PWNED").write_text("ran")
from transformers import BertConfig, BertForTokenClassification
class EvilConfig(BertConfig):
    model_type = "evilbert"
class EvilModel(BertForTokenClassification):
    config_class = EvilConfig
"""


def nerbatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "nerbatch", *args]


@pytest.fixture()
def evil_model(tiny_model, tmp_path) -> Path:
    """A copy of the tiny model whose config asks transformers to import evil.py from the folder."""
    folder = tmp_path / "evil"
    shutil.copytree(tiny_model, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "evilbert"
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForTokenClassification": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "evil.py").write_text(EVIL_CODE)
    return folder


# -- 1. no code from a model folder, whatever stdin holds ------------------------------------------


@pytest.mark.parametrize("command", ["tag", "evaluate"])
def test_model_with_custom_code_is_refused_and_never_run(evil_model, command, tmp_path):
    if command == "tag":
        args = nerbatch("tag", "-", "--model", str(evil_model), "--no-compile")
        stdin = "Paris is nice .\nyes\ny\nyes\n"
    else:
        gold = tmp_path / "gold.conll"
        gold.write_text("Paris B-LOC\nis O\n\nyes O\n")
        args = nerbatch("evaluate", "--model", str(evil_model), str(gold))
        stdin = "yes\nyes\n"
    proc = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert not (evil_model / "PWNED").exists()
    assert "auto_map" in proc.stderr and "never" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "[y/N]" not in proc.stdout + proc.stderr


def test_tagger_refuses_custom_code_in_the_library_too(evil_model):
    from nerbatch.errors import ModelError
    from nerbatch.tagging.tagger import Tagger, load_model

    with pytest.raises(ModelError, match="auto_map"):
        Tagger(str(evil_model))
    with pytest.raises(ModelError, match="auto_map"):
        load_model(str(evil_model))
    assert not (evil_model / "PWNED").exists()


# -- 2./3. nothing written over an input or over another output ------------------------------------


@pytest.fixture()
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.conll"
    path.write_text("Turku B-LOC\nis O\n\nHelsinki B-LOC\n", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "option", ["--report", "--report-json", "--log-json"],
)
def test_report_and_log_paths_may_not_be_an_input(tiny_model, victim, tmp_path, option):
    before = victim.read_bytes()
    out = tmp_path / "v.out.conll"
    res = CliRunner().invoke(cli, ["tag", str(victim), "-o", str(out), "--model", tiny_model, option, str(victim)])
    assert res.exit_code == 2, res.output
    assert f"{option} ({victim}) would overwrite the input" in res.stderr
    assert victim.read_bytes() == before and not out.exists()


def test_report_may_not_be_the_output_nor_the_rejects_file(tiny_model, victim, tmp_path):
    out = tmp_path / "v.out.conll"
    res = CliRunner().invoke(cli, ["tag", str(victim), "-o", str(out), "--model", tiny_model, "--report", str(out)])
    assert res.exit_code == 2 and "are the same file" in res.stderr
    rej = str(out) + ".rejects.jsonl"
    res = CliRunner().invoke(
        cli, ["tag", str(victim), "-o", str(out), "--model", tiny_model, "--on-error", "skip", "--report-json", rej]
    )
    assert res.exit_code == 2 and "are the same file" in res.stderr
    assert not out.exists()


def test_evaluate_output_may_not_be_an_input(victim, tmp_path):
    before = victim.read_bytes()
    for option in ("--output", "--json"):
        res = CliRunner().invoke(cli, ["evaluate", str(victim), option, str(victim)])
        assert res.exit_code == 2 and "would overwrite the input" in res.stderr
        assert victim.read_bytes() == before


def test_output_through_a_symlinked_folder_or_hard_link_is_the_input(tiny_model, tmp_path):
    d1 = tmp_path / "d1"
    d1.mkdir()
    src = d1 / "in.conll"
    src.write_text("Turku B-LOC\n", encoding="utf-8")
    (tmp_path / "d1link").symlink_to(d1, target_is_directory=True)
    os.link(src, tmp_path / "hard.conll")
    for target in (tmp_path / "d1link" / "in.conll", tmp_path / "hard.conll"):
        res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(target), "--model", tiny_model])
        assert res.exit_code == 2, res.output
        assert "would overwrite the input" in res.stderr
    assert src.read_text() == "Turku B-LOC\n"


def test_two_inputs_writing_one_output_through_a_link_are_refused(tiny_model, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.conll").write_text("Turku B-LOC\n")
    (b / "x.conll").write_text("Helsinki B-LOC\n")
    res = CliRunner().invoke(cli, ["tag", str(a / "x.conll"), str(b / "x.conll"), "-o", str(tmp_path / "out"), "--model", tiny_model])
    assert res.exit_code == 2 and "would both be written to" in res.stderr


# -- 5. one lock per output, held by the kernel --------------------------------------------------


def test_many_input_run_and_one_output_run_share_the_output_lock(tiny_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    inputs = [str(SAMPLE / "test.conll"), str(SAMPLE / "dev.conll")]
    # a one-output run holds out/test.conll: a folder run over the same outputs exits 75
    held = OutputLock(str(out / "test.conll"))
    held.acquire()
    try:
        res = CliRunner().invoke(cli, ["tag", *inputs, "-o", str(out), "--model", tiny_model])
    finally:
        held.release()
    assert res.exit_code == 75, res.output
    assert not [p for p in os.listdir(out) if not p.startswith(".")]  # nothing written: refused up front
    # a folder run holds out/dev.conll: a one-output run to that file exits 75
    held = OutputLock(str(out / "dev.conll"))
    held.acquire()
    try:
        res = CliRunner().invoke(cli, ["tag", inputs[1], "-o", str(out / "dev.conll"), "--model", tiny_model])
    finally:
        held.release()
    assert res.exit_code == 75 and "another nerbatch run" in res.stderr


def test_lock_whose_pid_was_reused_by_a_live_process_does_not_block(tiny_model, tmp_path):
    out = tmp_path / "o.conll"
    lock = tmp_path / ".o.conll.nerbatch.lock"
    # the pid of a live process (this one) on this host, but nobody holds the kernel lock
    lock.write_text(json.dumps({"pid": os.getppid(), "host": os.uname().nodename}))
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q"])
    assert res.exit_code == 0, res.output
    assert out.exists() and not lock.exists()


CONTENDER = """
import sys, time, os
from nerbatch.run.manifest import OutputLock
from nerbatch.errors import LockedError
target, go, release = sys.argv[1], sys.argv[2], sys.argv[3]
print("ready", flush=True)  # imports done: from here on only waiting for the go file
while not os.path.exists(go):
    time.sleep(0.001)
lock = OutputLock(target)
try:
    lock.acquire()
except LockedError:
    print("locked", flush=True)
    sys.exit(0)
print("got", flush=True)
while not os.path.exists(release):  # hold it until every contender has tried
    time.sleep(0.005)
lock.release()
"""


def test_many_processes_against_one_stale_lock_exactly_one_runs(tmp_path):
    script = tmp_path / "contender.py"
    script.write_text(CONTENDER)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for rnd in range(12):
        target = tmp_path / f"out{rnd}.conll"
        (tmp_path / f".out{rnd}.conll.nerbatch.lock").write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
        go, release = tmp_path / f"go{rnd}", tmp_path / f"release{rnd}"
        procs = [
            subprocess.Popen([sys.executable, str(script), str(target), str(go), str(release)], stdout=subprocess.PIPE, text=True)
            for _ in range(8)
        ]
        assert [p.stdout.readline().strip() for p in procs] == ["ready"] * 8  # all started and waiting
        go.write_text("")
        results = [p.stdout.readline().strip() for p in procs]  # each has tried once
        release.write_text("")
        for p in procs:
            p.communicate(timeout=60)
        assert sorted(results).count("got") == 1, (rnd, results)
        assert results.count("locked") == 7


# -- 7. compiled/int8 cache and manifests keyed by content ----------------------------------------


def test_cache_key_and_manifest_identity_follow_the_weights_not_the_mtimes(tiny_model, tmp_path):
    from nerbatch.model.cache import content_stamp, entry_key, model_identity

    a = tmp_path / "model_a"
    shutil.copytree(tiny_model, a)
    b = tmp_path / "model_b"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    assert content_stamp(str(a)) == content_stamp(str(b))
    weights = b / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    subprocess.run(["touch", "-r", str(a / "model.safetensors"), str(weights)], check=True)
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == ((a / "model.safetensors").stat().st_size, (a / "model.safetensors").stat().st_mtime_ns)
    assert content_stamp(str(a)) != content_stamp(str(b))
    for precision in ("fp32", "bf16", "int8"):
        assert entry_key(str(a), precision) != entry_key(str(b), precision)
    assert model_identity(str(a)).split("#")[1] != model_identity(str(b)).split("#")[1]


# -- 14./15. options and model names checked at once -----------------------------------------------


@pytest.mark.parametrize(
    "args, says",
    [
        (["--max-length", "3"], "--max-length"),
        (["--max-length", "-5"], "--max-length"),
        (["--max-length", "0"], "--max-length"),
        (["--max-length", "100000"], "--max-length"),
        (["--threads", "-1"], "--threads"),
        (["--threads", "0"], "--threads"),
        (["--device", "tpu"], "--device"),
        (["--batch-tokens", "0"], "--batch-tokens"),
        (["--max-batch", "0"], "--max-batch"),
        (["--stride", "0"], "--stride"),
        (["--checkpoint-every", "-1"], "--checkpoint-every"),
    ],
)
def test_bad_option_values_are_usage_errors(tiny_model, args, says):
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "--model", tiny_model, *args])
    assert res.exit_code == 2, res.output
    assert says in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("name", ["modle", "modle/", "./modle", "sub/dir/modle"])
def test_a_missing_model_folder_is_named_at_once(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no hub here: a hub id can only come from the local cache
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "--model", name])
    assert res.exit_code == 2, res.output
    assert f"{name}: model folder not found" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


# -- 17./19. signals and closed pipes ----------------------------------------------------------------


@pytest.fixture(scope="module")
def big_input(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.conll"
    path.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * 40, encoding="utf-8")
    return path


def _wait_for(predicate, proc, seconds=120.0) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_sigterm_after_a_checkpoint_keeps_the_part_for_resume(tiny_model, big_input, tmp_path):
    out = tmp_path / "out.conll"
    manifest = tmp_path / ".out.conll.nerbatch.json"
    args = nerbatch("tag", str(big_input), "-o", str(out), "--model", tiny_model, "--checkpoint-every", "97", "--batch-tokens", "512")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: manifest.exists() and '"checkpoint"' in manifest.read_text(), proc), "ended before a checkpoint"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated; the partial output" in err and "--resume" in err
    assert (tmp_path / ".out.conll.nerbatch.part").exists()
    assert not (tmp_path / ".out.conll.nerbatch.lock").exists() and not out.exists()
    done = subprocess.run(args + ["--resume", "-q"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ref = subprocess.run(nerbatch("tag", str(big_input), "--model", tiny_model, "-q", "--batch-tokens", "512"), capture_output=True, timeout=300)
    assert out.read_bytes() == ref.stdout
    assert not [p for p in os.listdir(tmp_path) if p.endswith((".part", ".lock"))]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_before_any_checkpoint_leaves_nothing(tiny_model, big_input, tmp_path, sig, code):
    out = tmp_path / "out.conll"
    part = tmp_path / ".out.conll.nerbatch.part"
    args = nerbatch("tag", str(big_input), "-o", str(out), "--model", tiny_model, "--checkpoint-every", "0", "--batch-tokens", "512")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert _wait_for(lambda: part.exists() and part.stat().st_size > 0, proc), "ended before writing"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "no partial output was left behind" in err
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".out.conll")] and not out.exists()


def test_a_closed_stdout_ends_the_run_quietly(tiny_model, big_input):
    proc = subprocess.Popen(
        nerbatch("tag", str(big_input), "--model", tiny_model, "-q"), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    assert proc.returncode == 141, err
    assert err == ""
