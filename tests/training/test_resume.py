"""`nerbatch train` as a job you can leave running: SIGKILL and resume, atomic model folder,
refusals, model selection, early stopping, output, the lock.

Killed runs are real processes (``.venv/bin/nerbatch train``) stopped at a known point by the test
hook ``NERBATCH_TEST_STOP_AT`` (the process SIGSTOPs itself there) and then SIGKILLed by the test.
They start together in a module fixture so their start-up overlaps; resumes and the uninterrupted
reference run go in-process. Data: a tiny synthetic corpus over the tiny encoder's whole-word
vocabulary, so dev F1 moves from epoch to epoch (6 steps an epoch at batch 8).
"""

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

A = [("turku", "B-LOC"), ("is", "O"), ("the", "O"), ("oldest", "O"), ("city", "O")]
B = [("the", "O"), ("city", "O"), ("of", "O"), ("finland", "B-LOC")]
B_DEV = [("the", "O"), ("city", "O"), ("of", "O"), ("finland", "O")]  # contradicts training: F1 falls late
STEPS_PER_EPOCH = 6  # 48 training windows, batch 8


def _write(path: Path, sents) -> str:
    path.write_text("".join("".join(f"{w} {t}\n" for w, t in s) + "\n" for s in sents), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory, tiny_encoder):
    d = tmp_path_factory.mktemp("resume-data")
    train = _write(d / "train.conll", ([A] * 7 + [B]) * 6)
    dev = _write(d / "dev.conll", [A, B_DEV] * 4)
    return {"train": train, "dev": dev, "base": tiny_encoder}


def _args(data, out, *extra) -> list[str]:
    return [
        "train", "--train", data["train"], "--dev", data["dev"], "-o", str(out), "--base-model", data["base"],
        "--epochs", "4", "--lr", "1e-2", "--batch-size", "8", "--max-length", "64", "--threads", "1", "--no-bf16", *extra,
    ]


@pytest.fixture(scope="module", autouse=True)
def _restore_torch_threads():
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def _nerbatch() -> list[str]:
    exe = Path(sys.executable).parent / "nerbatch"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "nerbatch"]


class Child:
    """A `nerbatch train` process that stops itself at ``stop_at`` (SIGSTOP) for the test to kill."""

    def __init__(self, args: list[str], stop_at: str, log: Path) -> None:
        env = {**os.environ, "NERBATCH_TEST_STOP_AT": stop_at, "HF_HUB_OFFLINE": "1"}
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(_nerbatch() + args, stdout=fh, stderr=subprocess.STDOUT, env=env)
        self.stopped = False

    def wait_stopped(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not self.stopped:
            pid, status = os.waitpid(self.proc.pid, os.WUNTRACED | os.WNOHANG)
            if pid and os.WIFSTOPPED(status):
                self.stopped = True
            elif pid:
                pytest.fail(f"training exited ({status}) before its stop point:\n{self.log.read_text()}")
            elif time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"training did not reach its stop point:\n{self.log.read_text()}")
            else:
                time.sleep(0.05)

    def sigkill(self) -> None:
        self.wait_stopped()
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(timeout=30) == -signal.SIGKILL

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def children(data, tmp_path_factory):
    """Three trainings started at once: stopped after epoch 1's checkpoint, at a mid-epoch
    checkpoint (--checkpoint-steps 4: step 8 is in epoch 2), and in the final save."""
    root = tmp_path_factory.mktemp("killed")
    plan = {
        "epoch": ([], f"checkpoint-{STEPS_PER_EPOCH}"),
        "mid": (["--checkpoint-steps", "4"], "checkpoint-8"),
        "final": ([], "final-save"),
    }
    kids = {}
    for name, (extra, stop_at) in plan.items():
        (root / name).mkdir()
        out = root / name / "model"
        kids[name] = (Child(_args(data, out, *extra), stop_at, root / f"{name}.log"), out)
    yield kids
    for child, _ in kids.values():
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory, children):
    """The uninterrupted run (in-process, while the children start)."""
    out = tmp_path_factory.mktemp("reference") / "model"
    res = _invoke(_args(data, out))
    assert res.exit_code == 0, res.output
    return out, res


def _work(out: Path) -> Path:
    return out.parent / f".{out.name}.nerbatch-train"


def _epochs(out: Path) -> list[dict]:
    rows = json.loads((out / "metrics.json").read_text())["epochs"]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def assert_same_model(got: Path, want: Path, dev: str) -> None:
    from safetensors.torch import load_file

    from nerbatch.io import read
    from nerbatch.tagging.tagger import Tagger

    assert _epochs(got) == _epochs(want)  # dev P/R/F1, accuracy, loss of every epoch
    mg, mw = (json.loads((p / "metrics.json").read_text()) for p in (got, want))
    assert mg["selected"] == mw["selected"] and mg["train_loss"] == mw["train_loss"]
    wg, ww = load_file(str(got / "model.safetensors")), load_file(str(want / "model.safetensors"))
    assert wg.keys() == ww.keys() and all((wg[k] == ww[k]).all() for k in wg)  # bit for bit

    def preds(model):
        return [s.pred for s in Tagger(str(model)).tag_sentences(read(dev))]

    assert preds(got) == preds(want)


def test_uninterrupted_run_output_and_folder(reference, data):
    out, res = reference
    assert sorted(os.listdir(out.parent)) == ["model"]  # no work folder, lock or temp folder left
    metrics = json.loads((out / "metrics.json").read_text())
    f1 = [r["f1"] for r in metrics["epochs"]]
    assert len(f1) == 4 and len(set(f1)) > 1  # the dev scores move: the comparisons below mean something
    # the start-up line, one row per epoch, the final table on stdout; no raw dicts, no progress bar
    assert "training on 48 sentences in 48 windows: 4 epochs of 6 steps (batch 8) = 24 steps" in res.stderr
    assert "fp32 on cpu, 1 thread" in res.stderr
    assert sum(line.startswith("  ") and line.strip()[0].isdigit() for line in res.stderr.splitlines()) == 4
    assert res.stdout.startswith("epoch") and "<- kept" in res.stdout
    assert not [line for line in res.output.splitlines() if line.lstrip().startswith("{")]
    assert "it/s" not in res.output and "Writing model shards" not in res.output
    # the user's umask, not 0600 temp-file permissions
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o777 & ~umask
    for name in os.listdir(out):
        assert os.stat(out / name).st_mode & 0o777 == 0o666 & ~umask, name
    assert not (out / "training_args.bin").exists()


def test_sigkill_after_first_epoch_then_resume_matches_uninterrupted(children, reference, data):
    child, out = children["epoch"]
    child.sigkill()
    assert not out.exists()
    work = _work(out)
    assert sorted(os.listdir(work / "trainer")) == [f"checkpoint-{STEPS_PER_EPOCH}"]
    # a checkpoint is never silently discarded or resumed with other data or options
    res = CliRunner().invoke(cli, _args(data, out))
    assert res.exit_code == 2 and "holds the checkpoint of an interrupted training" in res.stderr and "--resume" in res.stderr
    res = CliRunner().invoke(cli, _args(data, out, "--resume", "--lr", "2e-2"))
    assert res.exit_code == 2 and "--lr differs (0.01 then, 0.02 now)" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    other_dev = Path(data["dev"]).with_name("dev2.conll")
    other_dev.write_text(Path(data["dev"]).read_text() + "turku B-LOC\n\n", encoding="utf-8")
    args = _args(data, out, "--resume")
    args[args.index(data["dev"])] = str(other_dev)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and "--dev data differ" in res.stderr
    res = _invoke(_args(data, out, "--resume"))
    assert res.exit_code == 0, res.output
    assert "resuming from the checkpoint at epoch 1, step 6 of 24" in res.stderr
    assert sorted(os.listdir(out.parent)) == ["model"]
    assert_same_model(out, reference[0], data["dev"])
    assert not [line for line in child.output().splitlines() if line.lstrip().startswith("{")]
    # once complete, --resume (say, from cron) has nothing to do
    res = _invoke(_args(data, out, "--resume"))
    assert res.exit_code == 0 and "nothing to do" in res.stderr


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(children, reference, data):
    child, out = children["mid"]
    child.sigkill()
    work = _work(out)
    assert sorted(os.listdir(work / "trainer")) == ["checkpoint-8"]  # older ones pruned
    assert os.listdir(work / "trainer" / "checkpoint-8")  # model, optimiser, scheduler, RNG
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors", "nerbatch-state.json"} <= set(
        os.listdir(work / "trainer" / "checkpoint-8")
    )
    res = _invoke(_args(data, out, "--resume", "--checkpoint-steps", "4"))
    assert res.exit_code == 0, res.output
    assert "step 8 of 24" in res.stderr
    assert_same_model(out, reference[0], data["dev"])


@pytest.fixture(scope="module")
def stopped_in_final_save(children):
    child, out = children["final"]
    child.wait_stopped()
    return child, out


def test_second_training_of_the_same_output_exits_75(stopped_in_final_save, data):
    _child, out = stopped_in_final_save
    res = CliRunner().invoke(cli, _args(data, out, "--resume"))
    assert res.exit_code == 75, res.output
    assert "another nerbatch run" in res.stderr


def test_killed_during_final_save_leaves_no_model_folder(stopped_in_final_save, reference, data):
    child, out = stopped_in_final_save
    assert (_work(out) / "model.new" / "metrics.json").exists()  # complete, not yet renamed
    child.sigkill()
    assert not out.exists()
    res = _invoke(_args(data, out, "--resume"))  # the finished checkpoint: no training, just the save
    assert res.exit_code == 0, res.output
    assert_same_model(out, reference[0], data["dev"])


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(data, tmp_path, reference, monkeypatch):
    import nerbatch.training.loop as loop

    def interrupt(point):
        if point == "checkpoint-12":
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "stop_for_tests", interrupt)
    out = tmp_path / "model"
    res = CliRunner().invoke(cli, _args(data, out))
    assert res.exit_code == 130
    assert "the last checkpoint (epoch 2, step 12 of 24) is kept" in res.stderr and "--resume" in res.stderr
    assert not out.exists() and (_work(out) / "trainer" / "checkpoint-12").is_dir()
    monkeypatch.undo()
    res = _invoke(_args(data, out, "--resume"))
    assert res.exit_code == 0, res.output
    assert _epochs(out) == _epochs(reference[0])


def test_existing_model_is_replaced_only_with_force(reference, data, tmp_path):
    out = tmp_path / "model"
    shutil.copytree(reference[0], out)
    res = CliRunner().invoke(cli, _args(data, out))
    assert res.exit_code == 2 and "already holds a nerbatch model" in res.stderr and "--force" in res.stderr
    assert not _work(out).exists()
    res = _invoke(_args(data, out, "--force", "--epochs", "1", "--log-json", str(tmp_path / "log.jsonl")))
    assert res.exit_code == 0, res.output
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["log.jsonl", "model"]  # old model, temp folder, lock: gone
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in records] == ["epoch", "done"]
    assert records[0]["epoch"] == 1.0 and 0.0 <= records[0]["f1"] <= 1.0 and records[0]["seconds"] > 0


@pytest.mark.parametrize("force", [False, True])
def test_a_folder_that_is_not_a_model_is_never_written(data, tmp_path, force):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("my project\n")
    (project / "config.json").write_text("{}\n")  # looks a bit like a model, but is not one
    before = {p.name: p.read_bytes() for p in project.iterdir()}
    res = CliRunner().invoke(cli, _args(data, project, *(["--force"] if force else [])))
    assert res.exit_code == 2 and "is a folder that is not a nerbatch model" in res.stderr
    assert {p.name: p.read_bytes() for p in project.iterdir()} == before
    assert sorted(os.listdir(tmp_path)) == ["project"]
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    res = CliRunner().invoke(cli, _args(data, a_file, "--force"))
    assert res.exit_code == 2 and "not a folder" in res.stderr and a_file.read_text() == "x"


def _selection_run(data, out, monkeypatch, *extra):
    """6 epochs without document context (dev F1: 0, then a plateau from epoch 2 on); returns the
    metrics and the weights of every epoch-end checkpoint, recorded through the test hook."""
    from safetensors.torch import load_file

    import nerbatch.training.loop as loop

    weights = {}

    def record(point):
        if point.startswith("checkpoint-"):
            weights[int(point.split("-")[1])] = load_file(str(_work(out) / "trainer" / point / "model.safetensors"))

    monkeypatch.setattr(loop, "stop_for_tests", record)
    res = _invoke(_args(data, out, "--no-context", "--epochs", "6", *extra))
    assert res.exit_code == 0, res.output
    return json.loads((out / "metrics.json").read_text()), weights


def _same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def _dev_f1(model: Path, dev: str) -> float:
    from nerbatch.evaluation.scoring import Scorer
    from nerbatch.io import read
    from nerbatch.tagging.tagger import Tagger

    scorer = Scorer()
    for s in Tagger(str(model)).tag_sentences(read(dev)):
        if s.tokens:
            scorer.add(s.tags, s.pred)
    return scorer.result()["overall"]["f1"]


def test_select_best_keeps_the_best_dev_epoch(data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    metrics, weights = _selection_run(data, tmp_path / "model", monkeypatch)
    rows = metrics["epochs"]
    best = max(range(len(rows)), key=lambda i: (rows[i]["f1"], -i))  # ties: the earlier epoch
    assert best != len(rows) - 1, rows  # (the data make dev F1 stop improving early)
    assert metrics["selected"]["step"] == rows[best]["step"] and metrics["final"] == rows[best]
    assert "best dev F1" in metrics["selected"]["reason"]
    kept = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert _same_weights(kept, weights[rows[best]["step"]]) and not _same_weights(kept, weights[rows[-1]["step"]])
    assert _dev_f1(tmp_path / "model", data["dev"]) == pytest.approx(rows[best]["f1"])
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"kept: the weights after epoch {rows[best]['epoch']:g}, the best dev F1" in card and "<- kept" in card


def test_patience_stops_early(data, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    metrics, weights = _selection_run(data, tmp_path / "model", monkeypatch, "--patience", "1")
    rows = metrics["epochs"]
    assert len(rows) < 6 and metrics["stopped_early"] == {"epoch": rows[-1]["epoch"], "patience": 1}
    assert rows[-1]["f1"] <= max(r["f1"] for r in rows[:-1])  # the epoch without improvement ended it
    kept = metrics["selected"]["step"]
    assert kept == rows[-2]["step"] and _same_weights(load_file(str(tmp_path / "model" / "model.safetensors")), weights[kept])
    assert "stopped early after epoch" in (tmp_path / "model" / "README.md").read_text()


def test_options_that_need_a_dev_set(data, tmp_path):
    for extra in (["--select", "best"], ["--patience", "2"]):
        args = _args(data, tmp_path / "m", *extra)
        i = args.index("--dev")
        del args[i : i + 2]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 2 and "needs a dev set" in res.stderr


@pytest.mark.parametrize("change", ["auto_map", "model_type"])
def test_a_base_model_needing_its_own_code_or_unknown_architecture_is_refused(data, tmp_path, change):
    base = tmp_path / "base"
    shutil.copytree(data["base"], base)
    config = json.loads((base / "config.json").read_text())
    if change == "auto_map":
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    else:
        config["model_type"] = "no-such-architecture"
    (base / "config.json").write_text(json.dumps(config))
    args = _args(data, tmp_path / "m")
    args[args.index(data["base"])] = str(base)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1 and ("auto_map" in res.stderr or "no-such-architecture" in res.stderr)
    assert sorted(os.listdir(tmp_path)) == ["base"]  # no model, work folder or lock left
