"""What nerbatch writes, and where (issue #22, items 1-4, 6, 15, 19): planted links are never
followed, devices and FIFOs are written in place and never replaced, model files and training data
are never written over, nerbatch's own file names are refused as targets, passthrough columns are
kept, replaced outputs keep their mode, and the write-path check is one look-up per path."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli

from ..conftest import ROOT, SAMPLE

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
TAG = ["--precision", "fp32", "--no-compile", "-q"]


def tag(*args: str):
    return CliRunner().invoke(cli, ["tag", *args, *TAG])


@pytest.fixture()
def small(tmp_path) -> Path:
    path = tmp_path / "in.conll"
    path.write_text("Turku B-LOC\nis O\n\nHelsinki B-LOC\n", encoding="utf-8")
    return path


@pytest.fixture()
def victim(tmp_path) -> Path:
    path = tmp_path / "victim.txt"
    path.write_text("precious\n", encoding="utf-8")
    return path


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# --------------------------------------------------------------------------- #
# 1. links planted beside an output are never followed
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("planted", [".in.conll.nerbatch.part", ".in.conll.nerbatch.lock", ".in.conll.nerbatch.json"])
def test_a_link_planted_at_a_sidecar_name_is_not_followed(tiny_model, small, victim, tmp_path, planted):
    out = tmp_path / "out"
    out.mkdir()
    (out / planted).symlink_to(victim)
    res = tag(str(small), "-o", str(out / "in.conll"), "--model", tiny_model)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious\n"
    final = out / "in.conll"
    assert not final.is_symlink() and final.read_text().startswith("Turku B-LOC ")


def test_a_hard_link_planted_at_the_lock_name_is_not_written(tiny_model, small, victim, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.link(victim, out / ".in.conll.nerbatch.lock")
    res = tag(str(small), "-o", str(out / "in.conll"), "--model", tiny_model)
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious\n"


def test_a_link_planted_at_a_parquet_part_name_is_not_followed(tiny_model, victim, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for i in range(3):
        (out / f".t.parquet.nerbatch.part.{i:05d}").symlink_to(victim)
    res = tag(str(SAMPLE / "test.parquet"), "-o", str(out / "t.parquet"), "--model", tiny_model, "--checkpoint-every", "7")
    assert res.exit_code == 0, res.output
    assert victim.read_text() == "precious\n"
    import pyarrow.parquet as pq

    assert pq.read_table(out / "t.parquet").num_rows == pq.read_table(SAMPLE / "test.parquet").num_rows


def test_a_link_planted_at_the_rejects_part_name_is_not_followed(tiny_model, victim, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"tokens": ["a"]}\nnot json\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    (tmp_path / ".out.jsonl.rejects.jsonl.nerbatch.part").symlink_to(victim)
    res = tag(str(src), "-o", str(out), "--model", tiny_model, "--on-error", "skip")
    assert res.exit_code == 3, res.output
    assert victim.read_text() == "precious\n"
    assert "not json" in (tmp_path / "out.jsonl.rejects.jsonl").read_text()


def test_a_partial_output_that_became_a_link_is_not_resumed_through(victim, tmp_path):
    from nerbatch.errors import OutputError
    from nerbatch.io.base import AtomicOutput

    part = tmp_path / ".out.conll.nerbatch.part"
    part.symlink_to(victim)
    with pytest.raises(OutputError, match="cannot write here"):
        AtomicOutput(str(tmp_path / "out.conll"), part=str(part), resume_bytes=3)
    assert victim.read_text() == "precious\n"


def test_resume_plan_does_not_count_a_linked_part_file(tiny_model, small, victim, tmp_path):
    from nerbatch.run.manifest import save_manifest, sidecar
    from nerbatch.run.plan import FileJob, plan_run

    out = tmp_path / "out.conll"
    job = FileJob(str(small), str(out), "conll", "conll")
    fresh = plan_run([job], tiny_model, {"x": 1}, resume=True)[0]
    save_manifest(str(out), {"fingerprint": fresh.fingerprint, "complete": False, "checkpoint": {"sentences": 1}})
    Path(sidecar(str(out), "part")).symlink_to(victim)
    assert plan_run([job], tiny_model, {"x": 1}, resume=True)[0].status == "fresh"


def test_the_lock_takes_over_a_planted_link_fifo_or_hard_link(victim, tmp_path):
    from nerbatch.run.manifest import OutputLock

    out = str(tmp_path / "o.conll")
    lock_path = tmp_path / ".o.conll.nerbatch.lock"
    for plant in (lambda: lock_path.symlink_to(victim), lambda: os.link(victim, lock_path), lambda: os.mkfifo(lock_path)):
        plant()
        with OutputLock(out) as lock:
            assert stat.S_ISREG(os.fstat(lock.fd).st_mode) and not lock_path.is_symlink()
        assert not lock_path.exists() and victim.read_text() == "precious\n"


def test_train_does_not_follow_a_planted_work_folder_or_lock_link(tiny_encoder, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "model.new").mkdir(parents=True)
    (elsewhere / "model.new" / "keep.txt").write_text("keep")
    (tmp_path / ".m.nerbatch-train").symlink_to(elsewhere, target_is_directory=True)
    victim = tmp_path / "v.txt"
    victim.write_text("precious\n")
    (tmp_path / ".m.nerbatch.lock").symlink_to(victim)
    res = CliRunner().invoke(
        cli,
        ["train", "--train", str(SAMPLE / "dev.conll"), "-o", str(tmp_path / "m"), "--base-model", tiny_encoder,
         "--epochs", "1", "--every", "20", "--max-length", "64", "-q"],
    )
    assert res.exit_code == 0, res.output
    assert (elsewhere / "model.new" / "keep.txt").read_text() == "keep" and victim.read_text() == "precious\n"
    assert (tmp_path / "m" / "config.json").is_file()


# --------------------------------------------------------------------------- #
# 2. devices, FIFOs and links as outputs: written in place, never replaced
# --------------------------------------------------------------------------- #


def char_device(path: Path, minor: int) -> Path:
    """A private copy of /dev/null (minor 3) or /dev/full (minor 7)."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def is_char(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


@ROOT_ONLY
def test_a_full_device_output_is_a_write_error_and_stays_a_device(tiny_model, small, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    full = char_device(dev / "full", 7)
    res = tag(str(small), "-o", str(full), "--model", tiny_model)
    assert res.exit_code == 2, res.output
    assert "write failed: No space left on device" in res.stderr
    assert is_char(full) and sorted(os.listdir(dev)) == ["full"]


@ROOT_ONLY
def test_null_device_outputs_stay_devices_with_nothing_beside_them(tiny_model, small, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    null = str(char_device(dev / "null", 3))
    res = tag(str(small), "-o", null, "--model", tiny_model, "--report", null, "--report-json", null, "--log-json", null,
              "--on-error", "skip")
    assert res.exit_code == 0, res.output
    gold = tmp_path / "gold.conll"
    gold.write_text("Turku B-LOC B-LOC\nis O O\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["evaluate", str(gold), "--output", null, "--json", null, "--html", null])
    assert res.exit_code == 0, res.output
    assert is_char(Path(null)) and sorted(os.listdir(dev)) == ["null"]


def read_fifo(path: Path) -> tuple[threading.Thread, list]:
    got: list = []

    def reader():
        with open(path, "rb") as fh:
            got.append(fh.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    return thread, got


@pytest.mark.parametrize("fmt", ["conll", "jsonl", "parquet"])
def test_a_fifo_output_is_written_as_a_stream(tiny_model, tmp_path, fmt):
    folder = tmp_path / "pipes"
    folder.mkdir()
    fifo = folder / "pipe"
    os.mkfifo(fifo)
    thread, got = read_fifo(fifo)
    src = {"conll": SAMPLE / "dev.conll", "jsonl": SAMPLE / "test.jsonl", "parquet": SAMPLE / "test.parquet"}[fmt]
    res = tag(str(src), "-o", str(fifo), "--model", tiny_model, "--output-format", fmt)
    thread.join(60)
    assert res.exit_code == 0, res.output
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(folder) == ["pipe"]
    reference = tmp_path / f"ref.{fmt}"
    assert tag(str(src), "-o", str(reference), "--model", tiny_model, "--output-format", fmt).exit_code == 0
    assert got == [reference.read_bytes()]


def test_evaluate_reports_to_a_fifo(tmp_path):
    gold = tmp_path / "gold.conll"
    gold.write_text("Turku B-LOC B-LOC\nis O O\n", encoding="utf-8")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    thread, got = read_fifo(fifo)
    res = CliRunner().invoke(cli, ["evaluate", str(gold), "--json", str(fifo)])
    thread.join(60)
    assert res.exit_code == 0, res.output
    assert json.loads(got[0])["overall"]["f1"] == 1.0
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_to_a_file_is_written_through_and_stays_a_link(tiny_model, small, tmp_path):
    target = tmp_path / "real" / "out.conll"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "link.conll"
    link.symlink_to(target)
    res = tag(str(small), "-o", str(link), "--model", tiny_model)
    assert res.exit_code == 0, res.output
    assert link.is_symlink() and target.read_text().startswith("Turku B-LOC ")
    gold = tmp_path / "gold.conll"
    gold.write_text("Turku B-LOC B-LOC\n", encoding="utf-8")
    (tmp_path / "j.json").symlink_to(target)
    assert CliRunner().invoke(cli, ["evaluate", str(gold), "--json", str(tmp_path / "j.json")]).exit_code == 0
    assert (tmp_path / "j.json").is_symlink() and json.loads(target.read_text())["overall"]["f1"] == 1.0


def test_dev_stdout_names_the_descriptor():
    from nerbatch.io.atomic import fd_alias

    assert fd_alias("/dev/fd/1") == 1 and fd_alias(f"/proc/{os.getpid()}/fd/2") == 2 and fd_alias("/dev/null") is None
    if os.path.islink("/dev/stdout"):
        assert fd_alias("/dev/stdout") == 1


def test_dev_fd_1_appends_where_the_shell_appends(tiny_model, small, tmp_path):
    """``-o /dev/stdout >> FILE`` (here /dev/fd/1, which a broken build cannot replace: the
    unfixed code replaced /dev/stdout itself with a regular file)."""
    log = tmp_path / "all.conll"
    log.write_text("first\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as fh:
        proc = subprocess.run(
            [sys.executable, "-m", "nerbatch", "tag", str(small), "-o", "/dev/fd/1", "--model", tiny_model, *TAG],
            stdout=fh, stderr=subprocess.PIPE, text=True, env=env, timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    text = log.read_text()
    assert text.startswith("first\nTurku B-LOC ") and sorted(os.listdir(tmp_path)) == ["all.conll", "in.conll"]


def test_a_dangling_link_output_is_refused(tiny_model, small, tmp_path):
    (tmp_path / "out.conll").symlink_to(tmp_path / "nowhere" / "x.conll")
    res = tag(str(small), "-o", str(tmp_path / "out.conll"), "--model", tiny_model)
    assert res.exit_code == 2 and "is a symbolic link to a missing file" in res.stderr


def test_a_link_in_an_output_folder_is_refused_not_followed(tiny_model, small, victim, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "in.conll").symlink_to(victim)
    res = tag(str(small), str(SAMPLE / "dev.conll"), "-o", str(out), "--model", tiny_model)
    assert res.exit_code == 2 and "exists and is a symbolic link" in res.stderr
    assert victim.read_text() == "precious\n" and (out / "in.conll").is_symlink()


# --------------------------------------------------------------------------- #
# 3./4. model files and training data are never written over
# --------------------------------------------------------------------------- #


@pytest.fixture()
def model_copy(tiny_model, tmp_path) -> Path:
    folder = tmp_path / "M"
    shutil.copytree(tiny_model, folder)
    return folder


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "{out}", "--report", "{M}/config.json"],
        ["-o", "{out}", "--log-json", "{M}/tokenizer_config.json"],
        ["-o", "{M}/nerbatch.json", "--output-format", "conll"],
        ["-o", "{M}/model.safetensors", "--output-format", "conll"],
        ["-o", "{out}", "--report-json", "{M}/metrics.json"],
    ],
)
def test_tag_never_writes_into_its_model(model_copy, small, tmp_path, args):
    before = digest(model_copy)
    argv = [a.format(M=model_copy, out=tmp_path / "o.conll") for a in args]
    res = tag(str(small), "--model", str(model_copy), *argv)
    assert res.exit_code == 2, res.output
    assert "model" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert digest(model_copy) == before


@pytest.mark.parametrize("option", ["--json", "--output", "--html"])
def test_evaluate_never_writes_into_its_model(model_copy, small, option):
    before = digest(model_copy)
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(model_copy), str(small), option, str(model_copy / "metrics.json")])
    assert res.exit_code == 2 and "model" in res.stderr, res.output
    assert digest(model_copy) == before


@pytest.mark.parametrize("which", ["train", "dev", "base"])
def test_train_log_json_never_appends_to_its_inputs(tiny_encoder, tmp_path, which):
    train_file, dev_file = tmp_path / "train.conll", tmp_path / "dev.conll"
    shutil.copy(SAMPLE / "dev.conll", train_file)
    shutil.copy(SAMPLE / "dev.conll", dev_file)
    base = tmp_path / "base"
    shutil.copytree(tiny_encoder, base)
    log = {"train": train_file, "dev": dev_file, "base": base / "config.json"}[which]
    before = log.read_bytes()
    res = CliRunner().invoke(
        cli,
        ["train", "--train", str(train_file), "--dev", str(dev_file), "-o", str(tmp_path / "m"), "--base-model", str(base),
         "--epochs", "1", "--log-json", str(log), "-q"],
    )
    assert res.exit_code == 2, res.output
    assert "--log-json" in res.stderr and log.read_bytes() == before


@pytest.mark.parametrize("log", ["m/log.jsonl", ".m.nerbatch-train/log.jsonl"])
def test_train_log_json_inside_the_model_or_work_folder_is_refused(tiny_encoder, tmp_path, log):
    res = CliRunner().invoke(
        cli,
        ["train", "--train", str(SAMPLE / "dev.conll"), "-o", str(tmp_path / "m"), "--base-model", tiny_encoder,
         "--log-json", str(tmp_path / log), "-q"],
    )
    assert res.exit_code == 2 and "inside the model folder" in res.stderr


# --------------------------------------------------------------------------- #
# 6. nerbatch's own names as targets; passthrough columns
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    "option, name",
    [
        ("--log-json", ".out.conll.nerbatch.json"),
        ("--report", ".out.conll.nerbatch.part"),
        ("--report-json", ".out.conll.nerbatch.lock"),
        ("--report", ".out.parquet.nerbatch.part.00002"),
    ],
)
def test_a_sidecar_name_is_refused_as_a_target(tiny_model, small, tmp_path, option, name):
    res = tag(str(small), "-o", str(tmp_path / "out.conll"), "--model", tiny_model, option, str(tmp_path / name))
    assert res.exit_code == 2 and "has the name of a file nerbatch keeps" in res.stderr, res.output
    assert not (tmp_path / "out.conll").exists() and not (tmp_path / name).exists()


def test_the_rejects_file_is_refused_as_a_log_target(tiny_model, small, tmp_path):
    out = tmp_path / "out.conll"
    res = tag(str(small), "-o", str(out), "--model", tiny_model, "--on-error", "skip", "--log-json", f"{out}.rejects.jsonl")
    assert res.exit_code == 2 and "are the same file" in res.stderr


def test_parquet_output_keeps_every_input_member_it_does_not_write(tiny_model, tmp_path):
    import pyarrow.parquet as pq

    src = tmp_path / "in.jsonl"
    src.write_text(
        '{"tokens": ["Turku", "is"], "entities": [{"label": "LOC"}], "pred_scores": [1, 2], "note": "n"}\n', encoding="utf-8"
    )
    out = tmp_path / "out.parquet"
    assert tag(str(src), "-o", str(out), "--model", tiny_model).exit_code == 0
    row = pq.read_table(out).to_pylist()[0]
    assert json.loads(row["extra_json"]) == {"entities": [{"label": "LOC"}], "note": "n"}
    assert len(row["pred_scores"]) == 2 and row["pred_scores"] != [1, 2]  # this run's column replaces the input's

    table = pq.read_table(SAMPLE / "test.parquet").append_column("entities", pq.read_table(SAMPLE / "test.parquet")["tokens"])
    pq.write_table(table, tmp_path / "in.parquet")
    assert tag(str(tmp_path / "in.parquet"), "-o", str(tmp_path / "o2.parquet"), "--model", tiny_model).exit_code == 0
    assert "entities" in pq.read_schema(tmp_path / "o2.parquet").names


# --------------------------------------------------------------------------- #
# 19. a replaced file keeps its mode
# --------------------------------------------------------------------------- #


def test_a_replaced_output_keeps_its_mode(tiny_model, small, tmp_path):
    out, report = tmp_path / "out.jsonl", tmp_path / "r.txt"
    gold = tmp_path / "g.conll"
    gold.write_text("Turku B-LOC B-LOC\n", encoding="utf-8")
    for path in (out, report):
        path.write_text("old\n")
        path.chmod(0o600)
    assert tag(str(small), "-o", str(out), "--model", tiny_model, "--output-format", "jsonl").exit_code == 0
    assert CliRunner().invoke(cli, ["evaluate", str(gold), "--output", str(report)]).exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and stat.S_IMODE(report.stat().st_mode) == 0o600
    assert out.read_text() != "old\n" and report.read_text() != "old\n"


def test_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    from nerbatch.io.atomic import atomic_write

    path = tmp_path / "m.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write(str(path), "[]")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_text() == "[]"


# --------------------------------------------------------------------------- #
# 15. check_write_paths is one look-up per path
# --------------------------------------------------------------------------- #


def test_check_write_paths_is_linear(tmp_path):
    """20,000 outputs checked in well under the seconds the pairwise check took for 500."""
    import time

    from nerbatch.io.paths import check_write_paths
    from nerbatch.run.plan import FileJob

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    jobs = []
    for i in range(20_000):
        (src / f"{i}.conll").touch()
        jobs.append(FileJob(str(src / f"{i}.conll"), str(out / f"{i}.conll"), "conll", "conll"))
    t0 = time.perf_counter()
    check_write_paths(jobs, {"--log-json": str(tmp_path / "log.jsonl")}, rejects=True)
    assert time.perf_counter() - t0 < 10


def test_check_write_paths_still_finds_links_and_hard_links(tmp_path):
    from nerbatch.errors import InputError
    from nerbatch.io.paths import check_write_paths
    from nerbatch.run.plan import FileJob

    d = tmp_path / "d"
    d.mkdir()
    (d / "a.conll").write_text("x")
    (tmp_path / "dlink").symlink_to(d, target_is_directory=True)
    os.link(d / "a.conll", tmp_path / "hard.conll")
    (tmp_path / "flink.conll").symlink_to(d / "a.conll")
    for out in ("dlink/a.conll", "hard.conll", "flink.conll", "d/../d/a.conll"):
        with pytest.raises(InputError, match="would overwrite the input"):
            check_write_paths([FileJob(str(d / "a.conll"), str(tmp_path / out), "conll", "conll")])
    jobs = [FileJob(str(d / "a.conll"), str(tmp_path / "o.conll"), "conll", "conll")]
    with pytest.raises(InputError, match="are the same file"):
        check_write_paths(jobs, {"--report": str(tmp_path / "dlink" / ".." / "o.conll")})
