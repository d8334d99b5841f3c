"""A model's settings, read once: labels, window, stride, document context (and what training recorded).

:class:`ModelSettings` is frozen; the tagging pipeline reads it, the manifests of outputs record
its :meth:`~ModelSettings.fingerprint`, so an output made with other settings is stale. For a
model folder the settings come from its JSON files alone (``config.json``,
``tokenizer_config.json``, ``nerbatch.json``): nothing heavy is imported, and a run over empty
inputs never loads the weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from ..core.calibration import Calibration
from ..errors import ModelError

__all__ = [
    "NERBATCH_CONFIG", "ModelSettings", "read_model_config", "read_json", "settings_for", "text_contract", "calibration_of",
]

NERBATCH_CONFIG = "nerbatch.json"
MAX_WINDOW = 512  # no BERT-style model here takes longer rows


def read_json(path: str) -> dict:
    """A JSON object from a file; {} when it is missing, unreadable or not an object."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def read_model_config(model: str) -> dict:
    """nerbatch's own settings saved beside a trained model (empty for other models)."""
    return read_json(os.path.join(model, NERBATCH_CONFIG))


def text_contract(trained: dict) -> dict | None:
    """How the raw text of a model's training data was tokenised and split (``nerbatch.json``'s
    ``text``: :class:`nerbatch.core.tokenize.TextSettings` as a dict); None for a model trained on tokens."""
    value = trained.get("text")
    return value if isinstance(value, dict) else None


def calibration_of(model: str, trained: dict) -> Calibration | None:
    """The entity-score calibration map ``nerbatch.json`` records (:mod:`nerbatch.core.calibration`),
    None when it has none (models trained before calibration, or without a dev set; other models)."""
    value = trained.get("calibration")
    if value is None:
        return None
    try:
        return Calibration.from_json(value)
    except ValueError as exc:
        raise ModelError(
            f"{model}: nerbatch.json's calibration is not a valid map ({exc})",
            hint=f"run `nerbatch calibrate --model {model} --dev DEV` to fit it again",
        ) from None


@dataclass(frozen=True)
class ModelSettings:
    """What decides a model's input and output, whatever back-end runs it."""

    model: str
    labels: tuple[str, ...]
    max_length: int  # subwords per model window, special tokens included
    context: bool  # document context around each sentence
    stride: int | None  # step between windows of a long sentence (None: half a window)
    limit: int  # the model's own longest window
    casing: str = "none"  # "shape": word-shape ids as token types (nerbatch.model.casing), as training recorded
    trained: dict = field(default_factory=dict, compare=False)  # nerbatch.json as training wrote it
    calibration: Calibration | None = None  # the entity-score map (None: scores stay uncalibrated)

    def fingerprint(self) -> dict:
        """The settings that change the output (recorded in every output's manifest)."""
        fp = {"max_length": self.max_length, "context": self.context, "stride": self.stride, "labels": list(self.labels)}
        if self.casing != "none":  # (absent otherwise: outputs made before casing existed stay current)
            fp["casing"] = self.casing
        return fp

    def context_need(self) -> int:
        """Words of neighbouring sentences a block must carry for the document context (0: none):
        each such word gives at least one subword, and the context takes at most a window's."""
        return min(self.max_length, MAX_WINDOW) if self.context else 0


def window_limit(positions: int | None, tokenizer_max: int | None) -> int:
    """The longest window (subwords) a model takes: its positions, its tokenizer's limit (a huge
    ``model_max_length`` means none) and :data:`MAX_WINDOW`, whichever is least."""
    tokenizer_max = tokenizer_max or MAX_WINDOW
    return min(positions or MAX_WINDOW, tokenizer_max if tokenizer_max < 100_000 else MAX_WINDOW, MAX_WINDOW)


def settings_for(
    model: str,
    labels: list[str],
    positions: int,
    tokenizer_max: int,
    trained: dict,
    *,
    max_length: int | None = None,
    context: bool | None = None,
    stride: int | None = None,
) -> ModelSettings:
    """Resolve the settings: the run's options first, then what training recorded, then the model's limit."""
    if not labels or all(lab.startswith("LABEL_") for lab in labels):
        raise ModelError(
            f"{model}: the model config has no NER labels (id2label is missing or LABEL_0, LABEL_1, ...)",
            hint="train one with `nerbatch train`, or set id2label in config.json",
        )
    limit = window_limit(positions, tokenizer_max)
    window = max_length or trained.get("max_length") or limit
    if window > limit:
        raise ModelError(f"{model}: max_length {window} exceeds the model's limit of {limit}")
    return ModelSettings(
        model=model,
        labels=tuple(labels),
        max_length=int(window),
        context=bool(trained.get("context", False) if context is None else context),
        stride=stride,
        limit=limit,
        casing=_casing(model, trained),
        trained=trained,
        calibration=calibration_of(model, trained),
    )


def _casing(model: str, trained: dict) -> str:
    casing = trained.get("casing", "none")
    if casing not in ("shape", "none"):
        raise ModelError(
            f"{model}: nerbatch.json names casing {casing!r}, which this nerbatch does not know",
            hint="upgrade nerbatch, or retrain the model",
        )
    return casing


def _folder_config(model: str) -> dict:
    """A model folder's ``config.json``, with an error that says what is wrong with it."""
    path = os.path.join(model, "config.json")
    try:
        with open(path, "rb") as fh:
            config = json.loads(fh.read())
    except FileNotFoundError:
        raise ModelError(f"{model}: no config.json: not a transformers model folder") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:  # bad JSON or bad UTF-8
        raise ModelError(f"{path}: not valid JSON ({exc})", hint="restore the model folder as training wrote it") from None
    if not isinstance(config, dict):
        raise ModelError(
            f"{path}: holds a JSON {type(config).__name__}, not the object of a model configuration",
            hint="restore the model folder as training wrote it",
        )
    return config


def read_folder_settings(model: str, *, max_length=None, context=None, stride=None) -> ModelSettings:
    """The settings of a local model folder, from its JSON files."""
    config = _folder_config(model)
    id2label = config.get("id2label") or {}
    labels = [id2label.get(str(i), f"LABEL_{i}") for i in range(len(id2label))]
    tok_max = read_json(os.path.join(model, "tokenizer_config.json")).get("model_max_length") or MAX_WINDOW
    return settings_for(
        model, labels, config.get("max_position_embeddings") or MAX_WINDOW, tok_max, read_model_config(model),
        max_length=max_length, context=context, stride=stride,
    )
