"""Where `nerbatch train` writes: its work folder of checkpoints, and the model folder it swaps in.

Beside the output ``-o DIR`` training keeps ``.DIR.nerbatch-train/`` (the work folder) and the lock
``.DIR.nerbatch.lock``::

    .DIR.nerbatch-train/
      run.json                 what is being trained (options, data and base-model hashes): --resume compares it
      cache/                   the encoded training data (rebuilt at every start)
      trainer/checkpoint-N/    the Trainer's checkpoint after N steps (model, optimiser, scheduler, RNG states)
                               and nerbatch-state.json, written last: a checkpoint without it is incomplete
      best-N/                  with --select best: the best epoch's weights (hard links into its checkpoint)
      model.new/               the finished model folder being assembled, renamed to DIR when complete
      model.old/               with --force: the previous model, moved aside during the swap

Only the newest complete checkpoint is kept once the next one is complete, so disk use stays at one
or two checkpoints. Nothing here imports torch.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil

from ..errors import OutputError
from ..io.atomic import atomic_write, umask_mode
from ..io.paths import MODEL_FILES
from ..model.settings import read_json

STATE_FILE = "nerbatch-state.json"  # in each checkpoint; its presence marks the checkpoint complete
RUN_FILE = "run.json"
_TRAINING_ONLY = {  # files of a Trainer checkpoint that a model folder does not need
    STATE_FILE, "optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin",
}
# What a nerbatch model folder may hold (a folder with anything else is never replaced).


def work_dir(output: str) -> str:
    """``.NAME.nerbatch-train`` beside the output folder ``NAME``."""
    folder, name = os.path.split(os.path.abspath(output))
    return os.path.join(folder, f".{name}.nerbatch-train")


def trainer_dir(work: str) -> str:
    return os.path.join(work, "trainer")


def best_dir(work: str, step: int) -> str:
    return os.path.join(work, f"best-{step}")


def _foreign(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if not any(fnmatch.fnmatchcase(n, p) for p in MODEL_FILES))


def is_model_folder(folder: str) -> bool:
    """A folder `nerbatch train` made: config.json and nerbatch.json, and nothing a model lacks."""
    names = set(os.listdir(folder))
    return {"config.json", "nerbatch.json"} <= names and not _foreign(folder)


def check_target(output: str, force: bool) -> None:
    """Refuse an ``-o`` that must not be replaced: an existing model without ``force``, and anything
    that is not a nerbatch model (a file, a folder of other things) even with it. Missing or empty: fine."""
    if not os.path.lexists(output):
        return
    if not os.path.isdir(output):
        raise OutputError(f"{output}: exists and is not a folder", hint="choose a new -o path for the model folder")
    names = os.listdir(output)
    if not names:
        return
    if is_model_folder(output):
        if not force:
            raise OutputError(
                f"{output}: already holds a nerbatch model",
                hint="pass --force to replace it (the new model is built beside it and swapped in when complete)",
            )
        return
    foreign = _foreign(output)
    shown = ("it holds " + ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")) if foreign else "no nerbatch.json"
    raise OutputError(
        f"{output}: is a folder that is not a nerbatch model ({shown}); "
        "nerbatch train never writes into or replaces such a folder, even with --force",
        hint="choose a new -o path",
    )


def drop_foreign_work(work: str) -> None:
    """Remove a link or a file found at the work folder's name (nerbatch only ever makes a real
    folder there), so that nothing of training is written through it."""
    if os.path.islink(work) or os.path.lexists(work) and not os.path.isdir(work):
        try:
            os.unlink(work)
        except OSError as exc:
            raise OutputError(f"{work}: is not nerbatch's work folder and cannot be removed: {exc.strerror}") from None


def recover_swap(work: str, output: str) -> None:
    """Finish or undo a model swap that a killed run left half done, and drop a half-built model."""
    old = os.path.join(work, "model.old")
    if os.path.isdir(old):
        if os.path.lexists(output):
            shutil.rmtree(old)  # the new model is in place; only the clean-up was missed
        else:
            os.rename(old, output)  # killed between the two renames: put the previous model back
    shutil.rmtree(os.path.join(work, "model.new"), ignore_errors=True)


def install(new: str, output: str, *, work: str, force: bool) -> None:
    """Rename the complete model folder ``new`` to ``output``; an existing model there (``force``)
    is moved aside first and deleted once the new one is in place. Never writes into ``output``."""
    check_target(output, force)  # again: the folder may have changed during a long training
    try:
        if os.path.isdir(output) and not os.listdir(output):
            os.rmdir(output)  # an empty folder: nothing to keep (rmdir fails if something appeared)
        if os.path.lexists(output):
            old = os.path.join(work, "model.old")
            os.rename(output, old)
            os.rename(new, output)
            shutil.rmtree(old)
        else:
            os.rename(new, output)
        fsync_dir(os.path.dirname(os.path.abspath(output)))
    except OSError as exc:
        raise OutputError(f"{output}: cannot put the model folder in place: {exc.strerror}") from None


def fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def settle(folder: str) -> None:
    """Give every file in ``folder`` the user's permissions (0666 less the umask; transformers and
    safetensors may write 0600 temp files) and flush files and folder to disk."""
    mode = umask_mode()
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isfile(path) and not os.path.islink(path):
            if os.stat(path).st_mode & 0o777 != mode:
                os.chmod(path, mode)
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def write_json(path: str, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2) + "\n")


def commit_checkpoint(checkpoint: str, state: dict) -> None:
    """Mark a checkpoint complete: flush its files, then write nerbatch's state into it (last)."""
    settle(checkpoint)
    write_json(os.path.join(checkpoint, STATE_FILE), state)
    fsync_dir(checkpoint)


def checkpoints(work: str) -> list[tuple[int, str]]:
    """Complete checkpoints as (step, folder), oldest first."""
    root = trainer_dir(work)
    found = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        step = name.removeprefix("checkpoint-")
        path = os.path.join(root, name)
        if step.isdigit() and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(step), path))
    return sorted(found)


def latest_checkpoint(work: str) -> tuple[str, dict] | None:
    """The newest complete checkpoint and nerbatch's state saved in it, or None."""
    for _step, path in reversed(checkpoints(work)):
        state = read_json(os.path.join(path, STATE_FILE))
        if state:
            return path, state
    return None


def prune(work: str, *, keep: str, best_step: int | None) -> None:
    """Delete every checkpoint but ``keep`` (complete or not) and every best-N but ``best_step``'s."""
    root = trainer_dir(work)
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.startswith("checkpoint-") and os.path.abspath(path) != os.path.abspath(keep):
            shutil.rmtree(path, ignore_errors=True)
    for name in os.listdir(work):
        if name.startswith("best-") and name != f"best-{best_step}":
            shutil.rmtree(os.path.join(work, name), ignore_errors=True)


def link_model_files(src: str, dst: str) -> None:
    """Put the model files of a checkpoint (weights, config; not optimiser or trainer state) into
    ``dst``: hard links where the filesystem allows, copies elsewhere."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if name in _TRAINING_ONLY or name.startswith("rng_state") or not os.path.isfile(path):
            continue
        target = os.path.join(dst, name)
        if os.path.lexists(target):
            os.unlink(target)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def nonfinite_weights(folder: str) -> list[str]:
    """The names of the weight tensors in ``folder``'s safetensors files that hold a NaN or an
    infinity (read one tensor at a time)."""
    import torch
    from safetensors import safe_open

    bad = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), framework="pt") as fh:
                for key in fh.keys():
                    tensor = fh.get_tensor(key)
                    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                        bad.append(key)
    return bad


def save_best(checkpoint: str, *, work: str, step: int) -> None:
    """``best-STEP``: the model files of the checkpoint at ``step``, built under a temporary name."""
    tmp = os.path.join(work, f"best-{step}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    link_model_files(checkpoint, tmp)
    settle(tmp)
    final = best_dir(work, step)
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)


# -- a model folder at a URL (-o s3://bucket/model) -------------------------------------------------

MARKERS = ("nerbatch.json", "config.json")  # uploaded last, config.json the very last: their presence means complete


def staging_dir(url: str, cache_dir: str) -> str:
    """The local folder a training for the URL ``url`` builds its model in (its work folder beside
    it), under the cache: ``--resume`` on this machine continues there."""
    import hashlib

    return os.path.join(cache_dir, "uploads", hashlib.sha256(url.encode()).hexdigest()[:24], "model")


def check_remote_target(url: str, force: bool) -> None:
    """:func:`check_target` for a URL: nothing there, or a nerbatch model (replaced only with ``force``)."""
    from ..io.remote import listing

    try:
        names = set(listing(url))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{url}: cannot list the output: {exc.strerror or exc}") from None
    if not names:
        return
    foreign = sorted(n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in MODEL_FILES))
    if set(MARKERS) <= names and not foreign:
        if not force:
            raise OutputError(f"{url}: already holds a nerbatch model",
                              hint="pass --force to replace it (its config.json goes first, the new one comes last)")
        return
    shown = ("it holds " + ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")) if foreign else "no nerbatch.json"
    raise OutputError(f"{url}: is a folder that is not a nerbatch model ({shown}); nerbatch train never writes into it",
                      hint="choose a new -o URL")


def upload(folder: str, url: str, force: bool) -> None:
    """Upload the finished model folder to ``url``: every file but the markers first, then
    ``nerbatch.json`` and ``config.json``; a model there (``force``) loses its markers before any
    new file goes up. So a reader that finds config.json finds a whole model, never a mix."""
    from ..io.remote import put_folder

    check_remote_target(url, force)  # again: the folder may have changed during a long training
    try:
        put_folder(folder, url, last=MARKERS, replace=True)
    except OSError as exc:
        raise OutputError(f"{url}: cannot upload the model folder: {exc.strerror or exc}",
                          hint=f"the trained model is kept in {folder}; run the same command with --resume to upload it") from None
