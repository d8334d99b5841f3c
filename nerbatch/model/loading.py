"""Finding and loading a transformers model: local folder or hub id, with clear errors.

Used by tagging (every back-end starts from :func:`load_model`) and training (the base encoder).
nerbatch never runs code from a model folder (``trust_remote_code=False`` everywhere).
"""

from __future__ import annotations

import functools
import os

from ..errors import ModelError
from .settings import read_json

__all__ = ["check_fast", "first_line", "hub_reachable", "load_model", "refuse_custom_code", "resolve_model"]


def refuse_custom_code(folder: str) -> None:
    """Refuse a model folder that would need its own Python code to load.

    nerbatch never runs code from a model folder (``trust_remote_code=False`` everywhere); a config
    or tokenizer config with an ``auto_map`` would otherwise make transformers ask ``[y/N]`` on
    stdin, which is where the data is.
    """
    for name in ("config.json", "tokenizer_config.json"):
        data = read_json(os.path.join(folder, name))
        if data.get("auto_map"):
            raise ModelError(
                f"{folder}: {name} asks to run Python code from the model folder (auto_map); nerbatch never does",
                hint="use a model whose architecture transformers knows, e.g. one from `nerbatch train`",
            )


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub answers at all (a TCP connect, no request); False offline."""
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return _answers(url.hostname or "", url.port or 443, timeout)


@functools.lru_cache(maxsize=None)
def _answers(host: str, port: int, timeout: float) -> bool:
    """One connect per host and process (resolving and loading a model both ask)."""
    import socket

    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_model(model: str) -> bool:
    """Check that ``model`` can be loaded; True for a local folder, False for a hub id.

    Anything that looks like a path and is not a folder is "not found" at once, and so is a hub id
    that is neither in the local Hugging Face cache nor reachable (instead of a minute of retries).
    """
    if os.path.isdir(model):
        refuse_custom_code(model)
        return True
    if os.path.exists(model):
        raise ModelError(f"{model}: not a model folder (it is a file)", hint="pass the folder that holds config.json")
    pathlike = model.startswith((".", "/", "~")) or model.endswith(("/", os.sep)) or model.count("/") > 1
    if not pathlike and "/" in model and os.path.isdir(model.split("/", 1)[0]):
        pathlike = True  # "models/ner" where models/ exists: a folder, not a hub id
    if pathlike:
        raise ModelError(f"{model}: model folder not found", hint="check the path")
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the hub library refuses: not cached
        cached = False
    if not cached and not hub_reachable():
        raise ModelError(
            f"{model}: model folder not found, and the Hugging Face hub cannot be reached to look for a model of that id",
            hint="check the path, or set up network access for hub ids",
        )
    return False


def load_model(model: str):
    """Tokenizer and token-classification model from a folder or hub id, with clear errors.

    Never runs code from the model (``trust_remote_code=False``): such a model is refused.
    """
    local = resolve_model(model)
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if not local and not hub_reachable():
        local = True  # in the local cache only: do not wait on the network
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local, trust_remote_code=False)
    except Exception as exc:  # transformers raises OSError/ValueError/etc.
        raise ModelError(f"{model}: cannot load the tokenizer: {first_line(exc)}") from None
    check_fast(tokenizer, model)
    try:
        net = AutoModelForTokenClassification.from_pretrained(model, local_files_only=local, trust_remote_code=False)
    except Exception as exc:
        mismatch = _size_mismatch(model, local) if "ignore_mismatched_sizes" in str(exc) else None
        if mismatch is not None:
            raise ModelError(
                f"{model}: the weights do not fit config.json: {mismatch}",
                hint="config.json and the weights come from different models; restore the model folder as training wrote it",
            ) from None
        raise ModelError(f"{model}: cannot load a token-classification model: {first_line(exc)}") from None
    labels = [net.config.id2label[i] for i in range(net.config.num_labels)]
    if all(lab.startswith("LABEL_") for lab in labels):
        raise ModelError(
            f"{model}: the model config has no NER labels (id2label is LABEL_0, LABEL_1, ...)",
            hint="train one with `nerbatch train`, or set id2label in config.json",
        )
    return tokenizer, net


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_fast(tokenizer, name: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"{name}: the tokenizer has no fast (Rust) variant, so subwords cannot be mapped back to words",
            hint="use a model with a tokenizer.json",
        )


def _size_mismatch(model: str, local: bool) -> str | None:
    """Which weights have another shape than ``config.json`` gives them (transformers only says
    "see the above report", a log record); a label count that differs is named as such."""
    from transformers import AutoModelForTokenClassification

    try:
        net, info = AutoModelForTokenClassification.from_pretrained(
            model, local_files_only=local, trust_remote_code=False, ignore_mismatched_sizes=True, output_loading_info=True
        )
    except Exception:  # noqa: BLE001 - only the explanation is lost
        return None
    found = sorted((key, tuple(ckpt), tuple(want)) for key, ckpt, want in info.get("mismatched_keys") or ())
    if not found:
        return None
    labels = net.config.num_labels
    for key, ckpt, want in found:
        if want and want[0] == labels and ckpt and ckpt[0] != labels:
            return f"it names {labels} labels (id2label) but the weights' {key.rsplit('.', 1)[0]} has {ckpt[0]} outputs"
    return "; ".join(f"{key} is {list(ckpt)} in the weights, {list(want)} by the config" for key, ckpt, want in found)
