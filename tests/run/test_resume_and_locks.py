"""Cron-grade behaviour: kill and resume, locks, determinism, --on-error skip, logs and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli
from nerbatch.run.manifest import OutputLock

from ..conftest import SAMPLE

LABELS = {"O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"}


def nerbatch(*args: str) -> list[str]:
    return [sys.executable, "-m", "nerbatch", *args]


def visible(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[str]:
    """Three inputs: a CoNLL file of 1,200 sentences, a JSONL file and a small CoNLL file."""
    folder = tmp_path_factory.mktemp("corpus")
    big = folder / "big.conll"
    big.write_text((SAMPLE / "test.conll").read_text(encoding="utf-8") * 20, encoding="utf-8")
    jl = folder / "records.jsonl"
    jl.write_text((SAMPLE / "test.jsonl").read_text(encoding="utf-8") * 5, encoding="utf-8")
    return [str(big), str(jl), str(SAMPLE / "dev.conll")]


@pytest.fixture(scope="module")
def reference(corpus, tiny_model, tmp_path_factory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("ref")
    proc = subprocess.run(nerbatch("tag", *corpus, "-o", str(out), "--model", tiny_model, "-q"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return visible(out)


def _manifest(folder: Path, name: str) -> dict:
    try:
        return json.loads((folder / f".{name}.nerbatch.json").read_text())
    except (OSError, ValueError):
        return {}


@pytest.mark.parametrize("when", ["between files", "inside a file", "while writing"])
def test_sigkill_then_resume_gives_identical_output(corpus, tiny_model, reference, tmp_path, when):
    out = tmp_path / "out"
    args = nerbatch("tag", *corpus, "-o", str(out), "--model", tiny_model, "-q", "--checkpoint-every", "97", "--batch-tokens", "512")
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    killed = False
    while time.time() < deadline and proc.poll() is None:
        if when == "between files" and (out / "big.conll").exists():
            killed = True
        elif when == "inside a file" and _manifest(out, "big.conll").get("checkpoint", {}).get("sentences", 0) >= 97 * 3:
            killed = True
        elif when == "while writing" and (out / ".big.conll.nerbatch.part").exists() and (out / ".big.conll.nerbatch.part").stat().st_size > 70_000:
            killed = True
        if killed:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert killed, f"the run ended before the kill point ({when})"
    assert proc.returncode == -signal.SIGKILL
    # a killed run never leaves a visible partial output: what is there is complete
    for name, data in visible(out).items():
        assert data == reference[name]
    log = tmp_path / "log.jsonl"
    resumed = subprocess.run(args + ["--resume", "--log-json", str(log)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert visible(out) == reference
    assert not [p for p in os.listdir(out) if p.endswith((".part", ".lock"))]
    status = {Path(r["input"]).name: r["status"] for r in map(json.loads, log.read_text().splitlines())}
    if when == "between files":
        assert status["big.conll"] == "up to date"
    elif when == "inside a file":
        assert status["big.conll"].startswith("resumed after ")
    else:  # killed at an arbitrary byte: resumed from the last checkpoint before it
        assert status["big.conll"].startswith("resumed after ") or status["big.conll"] == "done"


def test_resume_skips_complete_outputs_and_redoes_changed_inputs(tiny_model, tmp_path):
    src = tmp_path / "a.conll"
    src.write_text("Turku B-LOC\nis O\n\nHelsinki B-LOC\n", encoding="utf-8")
    out = tmp_path / "a.out.conll"
    args = ["tag", str(src), "-o", str(out), "--model", tiny_model, "--resume"]
    r1 = CliRunner().invoke(cli, args)
    assert r1.exit_code == 0 and "already complete" not in r1.stderr
    r2 = CliRunner().invoke(cli, args)
    assert r2.exit_code == 0 and "1 output(s) already complete" in r2.stderr
    src.write_text("Turku B-LOC\nis O\n\nHelsinki B-LOC\nand O\n", encoding="utf-8")  # changed input
    r3 = CliRunner().invoke(cli, args)
    assert r3.exit_code == 0 and "already complete" not in r3.stderr
    assert len(out.read_text().splitlines()) == 5


def test_lock_held_by_a_live_process_exits_75(tiny_model, tmp_path):
    out = tmp_path / "o.conll"
    out.write_text("previous complete output\n")
    lock = tmp_path / ".o.conll.nerbatch.lock"
    held = OutputLock(str(out))  # a kernel lock (flock), held here as another run would hold it
    held.acquire()
    try:
        res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model])
    finally:
        lock_existed = lock.exists()
        held.release()
    assert res.exit_code == 75
    assert "another nerbatch run" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert out.read_text() == "previous complete output\n" and lock_existed


def test_stale_lock_from_a_dead_process_is_taken_over(tiny_model, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "o.conll"
    lock = tmp_path / ".o.conll.nerbatch.lock"
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "test.conll"), "-o", str(out), "--model", tiny_model, "-q"])
    assert res.exit_code == 0, res.output
    assert out.exists() and not lock.exists()


def test_deterministic_across_threads_and_file_order(corpus, tiny_model, reference, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r = subprocess.run(nerbatch("tag", *corpus, "-o", str(a), "--model", tiny_model, "-q", "--threads", "1", "--batch-tokens", "300"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(nerbatch("tag", *reversed(corpus), "-o", str(b), "--model", tiny_model, "-q", "--threads", "2", "--max-batch", "7"), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert visible(a) == visible(b) == reference


def test_block_size_does_not_change_output(tiny_model):
    from nerbatch.io import read
    from nerbatch.tagging.tagger import Tagger, TaggerOptions

    runs = []
    for block in (1, 7, 5000):
        tagger = Tagger(tiny_model, TaggerOptions(device="cpu", block=block, context=True))
        runs.append([(s.pred, s.scores) for s in tagger.tag_sentences(read(str(SAMPLE / "test.conll")))])
    assert runs[0] == runs[1] == runs[2]


def test_on_error_skip_leaves_bad_records_out_visibly(tiny_model, tmp_path):
    good = (SAMPLE / "dev.conll").read_text(encoding="utf-8").split("\n\n")
    broken = list(good)
    broken[3] = broken[3].replace("\n", "\nBROKEN LINE\n", 1) if "\n" in broken[3] else broken[3]
    src = tmp_path / "in.conll"
    src.write_text("\n\n".join(broken), encoding="utf-8")
    out = tmp_path / "out.conll"
    log = tmp_path / "log.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(src), "-o", str(out), "--model", tiny_model, "--on-error", "skip", "--log-json", str(log)])
    assert res.exit_code == 3, res.output
    assert "1 skipped" in res.stderr
    rejects = [json.loads(x) for x in (tmp_path / "out.conll.rejects.jsonl").read_text().splitlines()]
    assert len(rejects) == 1
    bad_line = src.read_text(encoding="utf-8").splitlines().index("BROKEN LINE") + 1
    assert rejects[0]["file"] == str(src) and f":{bad_line}: expected 4 columns" in rejects[0]["error"]
    assert "BROKEN LINE" in rejects[0]["source"]
    # every other sentence is tagged exactly as it is without the bad one
    clean = tmp_path / "clean.conll"
    clean.write_text("\n\n".join(broken[:3] + broken[4:]), encoding="utf-8")
    CliRunner().invoke(cli, ["tag", str(clean), "-o", str(tmp_path / "clean.out"), "--output-format", "conll", "--model", tiny_model, "-q"])
    got = [x for x in out.read_text().splitlines() if x.strip()]
    want = [x for x in (tmp_path / "clean.out").read_text().splitlines() if x.strip()]
    assert got == want
    [record] = [json.loads(x) for x in log.read_text().splitlines()]
    assert record["skipped"] == 1 and record["sentences"] == len([b for b in broken if b.strip() and not b.startswith("-DOCSTART-")]) - 1 or record["sentences"] > 0


def test_on_error_skip_skips_an_unreadable_file_and_goes_on(tiny_model, tmp_path):
    res = CliRunner().invoke(
        cli, ["tag", str(tmp_path / "missing.conll"), str(SAMPLE / "dev.conll"), "-o", str(tmp_path / "o"), "--model", tiny_model, "--on-error", "skip"]
    )
    assert res.exit_code == 3
    assert "missing.conll: no such file" in res.stderr
    assert (tmp_path / "o" / "dev.conll").exists() and not (tmp_path / "o" / "missing.conll").exists()


def _full_disk():
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_full_disk_fails_cleanly(tiny_model, corpus, tmp_path):
    """A write failure (file size limit standing in for a full disk) gives one line and no output."""
    out = tmp_path / "o.conll"
    proc = subprocess.run(
        nerbatch("tag", corpus[0], "-o", str(out), "--model", tiny_model, "-q"),
        capture_output=True, text=True, timeout=300, preexec_fn=_full_disk,
    )
    assert proc.returncode == 2
    assert "write failed" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_log_record_names_the_precision_and_backend_used(tmp_path, tiny_model):
    """--log-json says what ran: `auto` resolved to a precision (the suite's hook makes it fp32),
    and the back-end at the end of the file."""
    out, log = tmp_path / "out.conll", tmp_path / "log.jsonl"
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "dev.conll"), "-o", str(out), "--model", tiny_model, "-q",
                                   "--log-json", str(log)])
    assert res.exit_code == 0, res.output
    [record] = [json.loads(x) for x in log.read_text().splitlines()]
    assert record["precision"] == "fp32" and record["backend"] == "eager"
