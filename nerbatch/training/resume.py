"""What ``--resume`` compares and where it continues: the fingerprint of a training (data and base
model by content, the options that change the weights), the first difference between two in words,
and the work folder prepared for a fresh start or a resume."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict

from .. import __version__
from ..errors import InputError
from ..model.settings import read_json
from . import output as work_folder
from .options import RUN_ONLY, TrainingJob, TrainOptions

__all__ = ["run_fingerprint", "fingerprint_diff", "describe_checkpoint", "prepare_work", "already_trained"]


def _file_id(path: str) -> dict:
    h = hashlib.sha256()
    if path.startswith("hf:"):  # a hub dataset: its id (the hub revision is not looked up)
        return {"path": path, "sha256": None}
    from ..io.hf import split_ref
    from ..io.remote import is_url, open_read

    # a dataset folder (save_to_disk, data files; DIR@SPLIT): every file in it, by relative path
    top = split_ref(path)[0]
    names = [top] if is_url(top) or not os.path.isdir(top) else sorted(os.path.join(d, n) for d, _, fs in os.walk(top) for n in fs)
    try:
        for name in names:
            if name != top:
                h.update(os.path.relpath(name, top).encode() + b"\0")
            with open_read(name) if is_url(name) else open(name, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    except OSError as exc:
        raise InputError(f"cannot read the data: {exc.strerror}", path=path) from None
    return {"path": path, "sha256": h.hexdigest()}


def run_fingerprint(opts: TrainOptions, *, base: str, bf16: bool, select: str) -> dict:
    """What determines the trained model: data (contents), base model (contents), options."""
    from ..model.cache import model_identity

    options = {k: v for k, v in asdict(opts).items() if k not in RUN_ONLY + ("train", "dev", "base_model")}
    options.update(bf16=bf16, select=select)
    fp = {
        "nerbatch_version": __version__,
        "base_model": model_identity(base),
        "train": [_file_id(p) for p in opts.train],
        "dev": _file_id(opts.dev) if opts.dev else None,
        "options": options,
    }
    return json.loads(json.dumps(fp))  # as it reads back from run.json


def _flag(key: str) -> str:
    names = {"errors": "--errors", "bf16": "--bf16/--no-bf16 (as resolved)", "context": "--context/--no-context",
             "group_by_length": "--group-by-length/--no-group-by-length"}
    return names.get(key, "--" + key.replace("_", "-"))


def fingerprint_diff(saved: dict | None, now: dict) -> str | None:
    """The first difference between the run a checkpoint belongs to and this one, in words; None if none."""
    if not saved:
        return "the work folder's run.json is missing or unreadable"
    if saved.get("nerbatch_version") != now["nerbatch_version"]:
        return f"it was made by nerbatch {saved.get('nerbatch_version')}, this is {now['nerbatch_version']}"
    if saved.get("base_model") != now["base_model"]:
        return f"--base-model differs ({saved.get('base_model')} then, {now['base_model']} now)"
    for key, flag in (("train", "--train"), ("dev", "--dev")):
        old, new = saved.get(key), now[key]
        old_h = [f["sha256"] for f in old] if isinstance(old, list) else (old or {}).get("sha256")
        new_h = [f["sha256"] for f in new] if isinstance(new, list) else (new or {}).get("sha256")
        if old_h != new_h:
            then = ", ".join(f["path"] for f in old) if isinstance(old, list) else (old or {}).get("path")
            return f"the {flag} data differ from the checkpoint's ({then or 'none'} then; a file changed or another was given)"
    old_o, new_o = saved.get("options", {}), now["options"]
    for key in sorted(set(old_o) | set(new_o)):
        a, b = old_o.get(key), new_o.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            sub = next(k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
            key, a, b = sub, a.get(sub), b.get(sub)
        return f"{_flag(key)} differs ({a} then, {b} now)"
    return None


def describe_checkpoint(checkpoint: str) -> str:
    st = read_json(os.path.join(checkpoint, "trainer_state.json")) or {}
    return f"epoch {round(st.get('epoch') or 0.0, 2):g}, step {st.get('global_step', '?')} of {st.get('max_steps', '?')}"


def prepare_work(job: TrainingJob) -> tuple[tuple[str, dict] | None, list[str]]:
    """Resume from the work folder's newest checkpoint, or start it afresh; returns
    ``((checkpoint, state) or None, notices)``."""
    work, fp, opts = job.work, job.fingerprint, job.opts
    latest = work_folder.latest_checkpoint(work) if os.path.isdir(work) else None
    if latest is not None and opts.resume:
        why = fingerprint_diff(read_json(os.path.join(work, work_folder.RUN_FILE)), fp)
        if why:
            raise InputError(
                f"cannot resume from {work}: {why}",
                hint="run with the data and options of the interrupted training, or without --resume and with --force to start over",
            )
        shutil.rmtree(os.path.join(work, "cache"), ignore_errors=True)
        return latest, [f"resuming from the checkpoint at {describe_checkpoint(latest[0])}"]
    if latest is not None and not opts.force:
        raise InputError(
            f"{work}: holds the checkpoint of an interrupted training ({describe_checkpoint(latest[0])})",
            hint="add --resume to continue it, or --force to discard it and start over",
        )
    notes = [f"nothing to resume in {work}: starting from the beginning"] if opts.resume else []
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    work_folder.write_json(os.path.join(work, work_folder.RUN_FILE), fp)
    return None, notes


def already_trained(job: TrainingJob) -> dict | None:
    """With --resume: the metrics of a complete model at ``-o`` made by this very run, if any."""
    output, work, fp = job.opts.output_dir, job.work, job.fingerprint
    if not os.path.isdir(output) or work_folder.latest_checkpoint(work) is not None or not work_folder.is_model_folder(output):
        return None
    metrics = read_json(os.path.join(output, "metrics.json"))
    if not metrics or fingerprint_diff(metrics.get("fingerprint"), fp) is not None:
        return None
    return {**metrics, "up_to_date": True}
