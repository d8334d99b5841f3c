"""`tag`, `evaluate` and `train` on S3: a local S3 server (moto's, on 127.0.0.1) reached through s3fs
exactly as a user reaches S3, configured by the environment only; nothing leaves this machine."""

from __future__ import annotations

import gzip
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from nerbatch.cli import cli

from ..conftest import SAMPLE

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

BUCKET = "nerbatch-test"
TAG = ["--precision", "fp32", "--no-compile", "-q"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """The server, the environment a user would set for it (credentials, endpoint), and an s3fs
    filesystem for the test's own looks at the bucket."""
    import s3fs
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    nothing = str(tmp_path_factory.mktemp("aws") / "none")
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": nothing, "AWS_CONFIG_FILE": nothing,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        s3fs.S3FileSystem.clear_instance_cache()
        fs = s3fs.S3FileSystem(skip_instance_cache=True)
        fs.mkdir(BUCKET)
        yield fs
        s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def upload(fs, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{BUCKET}/{prefix}/{path.relative_to(folder).as_posix()}")


def visible(fs, prefix: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {k.rsplit("/", 1)[1]: fs.cat_file(k) for k in sorted(fs.find(f"{BUCKET}/{prefix}"))
            if not k.rsplit("/", 1)[1].startswith(".")}


class Watcher(threading.Thread):
    """Lists the bucket over and over while a run goes and reads every object under a final name
    (not a hidden one): what it saw is checked against the finished outputs."""

    def __init__(self, prefix: str) -> None:
        super().__init__(daemon=True)
        import s3fs

        self.fs = s3fs.S3FileSystem(skip_instance_cache=True)
        self.prefix = f"{BUCKET}/{prefix}"
        self.seen: dict[str, set[bytes]] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.fs.invalidate_cache()
            try:
                for key in self.fs.find(self.prefix):
                    name = key.rsplit("/", 1)[1]
                    if key.startswith(self.prefix + "/") and not name.startswith("."):
                        self.seen.setdefault(name, set()).add(self.fs.cat_file(key))
            except FileNotFoundError:  # listed, then moved or deleted before it was read
                pass
            time.sleep(0.02)

    def __enter__(self) -> "Watcher":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.halt.set()
        self.join(timeout=30)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    (folder / "a.conll").write_bytes((SAMPLE / "test.conll").read_bytes() * 3)
    shutil.copy(SAMPLE / "test.jsonl", folder / "b.jsonl")
    shutil.copy(SAMPLE / "test.parquet", folder / "c.parquet")
    (folder / "d.conll.gz").write_bytes(gzip.compress((SAMPLE / "dev.conll").read_bytes()))
    return folder


@pytest.fixture(scope="module")
def model_url(s3, tiny_model) -> str:
    upload(s3, Path(tiny_model), "model")
    return f"s3://{BUCKET}/model"


@pytest.fixture(scope="module")
def tagged(s3, inputs, model_url, tiny_model, tmp_path_factory):
    """The same run on S3 (inputs, outputs, model, report and log all URLs) and on local files."""
    upload(s3, inputs, "in")
    local = tmp_path_factory.mktemp("local")
    common = ["--checkpoint-every", "13", *TAG]
    with Watcher("out") as watcher:
        remote = CliRunner().invoke(cli, ["tag", f"s3://{BUCKET}/in/", "-o", f"s3://{BUCKET}/out/", "--model", model_url,
                                          "--report-json", f"s3://{BUCKET}/report.json", "--log-json", f"s3://{BUCKET}/log.jsonl",
                                          *common])
    assert remote.exit_code == 0, remote.output
    res = CliRunner().invoke(cli, ["tag", str(inputs), "-o", str(local / "out"), "--model", tiny_model,
                                   "--report-json", str(local / "report.json"), *common])
    assert res.exit_code == 0, res.output
    return local, watcher


def test_tag_on_s3_gives_the_bytes_of_a_local_run(s3, tagged):
    local, watcher = tagged
    outputs = {p.name: p.read_bytes() for p in sorted((local / "out").iterdir()) if not p.name.startswith(".")}
    assert sorted(outputs) == ["a.conll", "b.jsonl", "c.parquet", "d.conll.gz"]
    assert visible(s3, "out") == outputs
    # listed while the run went: an object under an output's name only ever held the whole output
    assert watcher.seen and all(seen == {outputs[name]} for name, seen in watcher.seen.items())
    assert not [k for k in s3.find(f"{BUCKET}/out") if k.endswith((".lock", ".part")) or ".part.c" in k]
    report = json.loads(s3.cat_file(f"{BUCKET}/report.json"))
    expected = json.loads((local / "report.json").read_text())
    for key in ("overall", "per_type", "sentences", "tokens", "accuracy"):
        assert report[key] == expected[key], key
    assert report["model"] == f"s3://{BUCKET}/model"
    log = [json.loads(line) for line in s3.cat_file(f"{BUCKET}/log.jsonl").decode().splitlines()]
    assert [r["output"].rsplit("/", 1)[1] for r in log] == sorted(outputs)


def test_ray_engine_on_s3_gives_the_bytes_of_a_local_run(s3, tagged, model_url):
    """`--engine ray` on the same S3 inputs, model and output folder kind: each worker reads its input and
    writes its output object itself; the outputs equal the local engine's on local files, and no
    partial object is ever listed under a final name."""
    pytest.importorskip("ray")
    local, _ = tagged
    outputs = {p.name: p.read_bytes() for p in sorted((local / "out").iterdir()) if not p.name.startswith(".")}
    with Watcher("rayout") as watcher:
        res = CliRunner().invoke(cli, ["tag", f"s3://{BUCKET}/in/", "-o", f"s3://{BUCKET}/rayout/", "--model", model_url,
                                       "--engine", "ray", "--workers", "2", "--checkpoint-every", "13", *TAG])
    assert res.exit_code == 0, res.output
    assert visible(s3, "rayout") == outputs
    assert watcher.seen and all(seen == {outputs[name]} for name, seen in watcher.seen.items())
    assert not [k for k in s3.find(f"{BUCKET}/rayout") if k.endswith((".lock", ".part")) or ".part.c" in k]


def test_resume_on_s3_skips_complete_outputs(s3, tagged, model_url):
    res = CliRunner().invoke(cli, ["tag", f"s3://{BUCKET}/in/", "-o", f"s3://{BUCKET}/out/", "--model", model_url,
                                   "--resume", "--checkpoint-every", "13", "--precision", "fp32", "--no-compile"])
    assert res.exit_code == 0, res.output
    assert "4 output(s) already complete" in res.stderr


def test_evaluate_reads_and_writes_s3(s3, tagged):
    local, _ = tagged
    res = CliRunner().invoke(cli, ["evaluate", f"s3://{BUCKET}/out/a.conll", "--json", f"s3://{BUCKET}/scores/a.json",
                                   "--output", f"s3://{BUCKET}/scores/a.txt", "--bootstrap", "50"])
    assert res.exit_code == 0, res.output
    ref = CliRunner().invoke(cli, ["evaluate", str(local / "out" / "a.conll"), "--json", str(local / "a.json"),
                                   "--output", str(local / "a.txt"), "--bootstrap", "50"])
    assert ref.exit_code == 0, ref.output
    assert s3.cat_file(f"{BUCKET}/scores/a.txt") == (local / "a.txt").read_bytes()
    remote = json.loads(s3.cat_file(f"{BUCKET}/scores/a.json"))
    expected = json.loads((local / "a.json").read_text())
    assert remote["overall"] == expected["overall"] and remote["sentences"] == expected["sentences"]


def _manifest(fs, key: str) -> dict:
    fs.invalidate_cache()
    try:
        return json.loads(fs.cat_file(key))
    except (OSError, ValueError):
        return {}


def test_sigkill_then_resume_on_s3_gives_the_same_bytes(s3, model_url, tiny_model, tmp_path):
    """Killed with SIGKILL inside a file: only nerbatch's hidden objects are left (chunks, manifest,
    lock); --resume takes over the dead run's lock, continues after its last checkpoint, and the
    output is the local engine's, byte for byte; no listing during the resumed run ever sees a
    partial object under the output's name."""
    big = tmp_path / "in" / "big.conll"
    big.parent.mkdir()
    big.write_bytes((SAMPLE / "test.conll").read_bytes() * 20)
    upload(s3, big.parent, "kill/in")
    ref = CliRunner().invoke(cli, ["tag", str(big), "-o", str(tmp_path / "ref.conll"), "--model", tiny_model, *TAG])
    assert ref.exit_code == 0, ref.output
    args = ["tag", f"s3://{BUCKET}/kill/in/", "-o", f"s3://{BUCKET}/kill/out/", "--model", model_url,
            "--checkpoint-every", "97", "--batch-tokens", "512", *TAG]
    proc = subprocess.Popen([sys.executable, "-m", "nerbatch", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if _manifest(s3, f"{BUCKET}/kill/out/.big.conll.nerbatch.json").get("checkpoint", {}).get("sentences", 0) >= 97 * 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    s3.invalidate_cache()
    left = sorted(k.rsplit("/", 1)[1] for k in s3.find(f"{BUCKET}/kill/out"))
    # (the manifest's own temporary object too, when the kill came while a checkpoint was being written)
    assert all(name.startswith((".big.conll.nerbatch.", "..big.conll.nerbatch.json.")) for name in left), left
    assert ".big.conll.nerbatch.part.c00002" in left and ".big.conll.nerbatch.lock" in left

    log = tmp_path / "log.jsonl"
    with Watcher("kill/out") as watcher:
        resumed = CliRunner().invoke(cli, [*args, "--resume", "--log-json", str(log)])
    assert resumed.exit_code == 0, resumed.output
    expected = (tmp_path / "ref.conll").read_bytes()
    assert visible(s3, "kill/out") == {"big.conll": expected}
    assert watcher.seen.get("big.conll", {expected}) == {expected}
    assert json.loads(log.read_text())["status"].startswith("resumed after ")
    left = sorted(k.rsplit("/", 1)[1] for k in s3.find(f"{BUCKET}/kill/out"))
    assert left == [".big.conll.nerbatch.json", "big.conll"]


def test_lock_object_of_a_live_run_exits_75(s3, model_url):
    s3.pipe_file(f"{BUCKET}/locked/.o.conll.nerbatch.lock", json.dumps({"pid": 1, "host": "another-host"}).encode())
    res = CliRunner().invoke(cli, ["tag", str(SAMPLE / "dev.conll"), "-o", f"s3://{BUCKET}/locked/o.conll",
                                   "--model", model_url, *TAG])
    assert res.exit_code == 75, res.output
    assert "another nerbatch run (pid 1 on another-host)" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not s3.exists(f"{BUCKET}/locked/o.conll")


def test_train_from_and_to_s3(s3, tiny_encoder, tmp_path):
    """--train/--dev URLs and -o URL: the uploaded folder holds the files of the same training run
    on local files; a second run without --force leaves the model alone."""
    upload(s3, SAMPLE, "data")
    url = f"s3://{BUCKET}/trained"
    common = ["--base-model", tiny_encoder, "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--no-bf16",
              "--no-precision-check", "-q"]
    res = CliRunner().invoke(cli, ["train", "--train", f"s3://{BUCKET}/data/train.conll", "--dev",
                                   f"s3://{BUCKET}/data/dev.conll", "-o", url, "--log-json", f"s3://{BUCKET}/train.jsonl",
                                   *common])
    assert res.exit_code == 0, res.output
    events = [json.loads(line)["event"] for line in s3.cat_file(f"{BUCKET}/train.jsonl").decode().splitlines()]
    assert events[0] == "epoch" and len(events) >= 2
    ref = CliRunner().invoke(cli, ["train", "--train", str(SAMPLE / "train.conll"), "--dev", str(SAMPLE / "dev.conll"),
                                   "-o", str(tmp_path / "model"), *common])
    assert ref.exit_code == 0, ref.output
    remote = visible(s3, "trained")
    local = {p.name: p.read_bytes() for p in (tmp_path / "model").iterdir()}
    assert sorted(remote) == sorted(local)
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        assert remote[name] == local[name], name
    settings = [json.loads(files["nerbatch.json"]) for files in (remote, local)]
    for one in settings:  # the calibration names its dev file: an s3 URL, a local path
        one.get("calibration", {}).pop("dev", None)
    assert settings[0] == settings[1]
    again = CliRunner().invoke(cli, ["train", "--train", f"s3://{BUCKET}/data/train.conll", "-o", url, *common])
    assert again.exit_code == 2 and "already holds a nerbatch model" in again.stderr
    assert visible(s3, "trained") == remote


@pytest.mark.parametrize("args, message", [
    (["tag", f"s3://{BUCKET}-missing/in.conll", "-o", "OUT"], "no such file, folder or bucket"),
    (["tag", "IN", "-o", f"s3://{BUCKET}-missing/out.conll"], "no such bucket or folder"),
    (["tag", "IN", "--model", f"s3://{BUCKET}/no-model"], "model folder not found"),
    (["tag", "IN", "--model", f"s3://{BUCKET}-missing/model"], "model folder not found"),
    (["tag", "foo://x/in.conll", "-o", "OUT"], "no filesystem for this URL: Protocol not known: foo"),
    (["tag", "gs://b/in.conll", "-o", "OUT"], "pip install"),
    (["tag", "IN", "-o", f"s3://{BUCKET}/ds", "--output-format", "hf"], "a Hugging Face dataset output cannot go to a URL"),
    (["tag", "IN", "-o", f"s3://{BUCKET}/model/config.json", "--output-format", "jsonl"], "would add config.json to the model folder"),
    (["evaluate", "IN", "--json", "azfoo://x/r.json"], "no filesystem for this URL"),
    (["evaluate", f"s3://{BUCKET}/nothing/", "--json", "OUT"], "no such file or folder"),
])
def test_bad_urls_are_one_line_errors(s3, model_url, tmp_path, args, message):
    if args[1].startswith("gs://") and importlib.util.find_spec("gcsfs") is not None:
        pytest.skip("gcsfs is installed here: gs:// URLs are known")
    args = [str(SAMPLE / "dev.conll") if a == "IN" else str(tmp_path / "out.conll") if a == "OUT" else a for a in args]
    if args[0] == "tag" and "--model" not in args:
        args += ["--model", model_url]
    res = CliRunner().invoke(cli, [*args, *(TAG if args[0] == "tag" else [])])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "out.conll").exists()


def test_no_credentials_is_a_one_line_error(s3, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    proc = subprocess.run([sys.executable, "-m", "nerbatch", "evaluate", f"s3://{BUCKET}/in/a.conll"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Unable to locate credentials" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
