"""Entity-score calibration of a model folder: tag a dev set with the model's uncalibrated scores, fit
the map (:func:`nerbatch.core.calibration.fit`) and record it in the folder's ``nerbatch.json``.

``nerbatch train`` runs :func:`fit_on_dev` on the model it assembles when there is a dev set;
``nerbatch calibrate`` (:func:`calibrate_model`) on a folder that exists (an older model, or a model
to calibrate on other data), rewriting ``nerbatch.json`` atomically with everything else kept.

The record says how good the map is: ``ece_uncalibrated``, the expected calibration error of the
scores before (on the dev set), and ``ece_held_out``, an estimate of the error after on data the
map was not fitted on (two-fold: fitted on every other sentence of the dev set, measured on the
rest, and the other way round).
"""

from __future__ import annotations

import json
import os

from ..core.calibration import Calibration, entity_outcomes, expected_calibration_error, fit
from ..errors import InputError, ModelError

__all__ = ["dev_outcomes", "fit_on_dev", "calibrate_model", "describe"]


def dev_outcomes(model: str, dev: str, *, fmt: str | None = None, options=None, tagger_options=None) -> list[list]:
    """``(uncalibrated score, correct)`` of each entity ``model`` predicts on ``dev``, one list per
    sentence (:func:`nerbatch.core.calibration.entity_outcomes`). Raw text is cut as the model's
    training text was. InputError when ``dev`` holds no gold tags."""
    from dataclasses import replace

    from ..io import ReadOptions, read
    from ..io.text import apply_contract
    from ..model.settings import read_model_config, text_contract
    from ..tagging.tagger import Tagger, TaggerOptions

    options = options or ReadOptions()
    options, _ = apply_contract(
        options, text_contract(read_model_config(model)),
        tokenizer_given=options.tokenizer != "treebank", layout_given=options.layout is not None,
    )
    tagger_options = replace(tagger_options or TaggerOptions(), raw_scores=True)
    if tagger_options.precision == "auto":  # the map is for every precision: fit it on the reference
        tagger_options = replace(tagger_options, precision="fp32")
    tagger = Tagger(model, tagger_options)
    out, gold_seen = [], False
    for sent in tagger.tag_sentences(read(dev, fmt, options)):
        if not sent.tokens:
            continue
        if sent.tags is None:
            continue  # (a record without gold among others)
        gold_seen = True
        out.append(entity_outcomes(sent.tags, sent.pred, sent.scores))
    if not gold_seen:
        raise InputError("no gold tags to calibrate on", path=dev, hint="the dev file must hold gold tags (or entity spans)")
    return out


def _held_out_ece(by_sentence: list[list]) -> float | None:
    """The ECE of maps fitted on one half of the sentences (every other one), measured on the other half."""
    halves = [[o for s in by_sentence[k::2] for o in s] for k in (0, 1)]
    if not all(halves):
        return None
    errors, weights = [], []
    for train, test in ((halves[0], halves[1]), (halves[1], halves[0])):
        cal = fit([s for s, _ in train], [c for _, c in train])
        errors.append(expected_calibration_error([cal(s) for s, _ in test], [c for _, c in test]))
        weights.append(len(test))
    return sum(e * w for e, w in zip(errors, weights)) / sum(weights)


def fit_on_dev(model: str, dev: str, *, fmt: str | None = None, options=None, tagger_options=None) -> Calibration:
    """The calibration map of ``model`` fitted on ``dev`` (see the module docstring for ``info``).
    InputError when the model predicts no entity there."""
    by_sentence = dev_outcomes(model, dev, fmt=fmt, options=options, tagger_options=tagger_options)
    flat = [o for s in by_sentence for o in s]
    if not flat:
        raise InputError("the model predicts no entity there: nothing to calibrate", path=dev)
    scores, correct = [s for s, _ in flat], [c for _, c in flat]
    held_out = _held_out_ece(by_sentence)
    info = {
        "method": "isotonic",
        "score": "mean word probability",
        "dev": dev,
        "sentences": len(by_sentence),
        "entities": len(flat),
        "correct": sum(correct),
        "ece_uncalibrated": round(expected_calibration_error(scores, correct), 4),
        "ece_held_out": None if held_out is None else round(held_out, 4),
    }
    return fit(scores, correct, info)


def describe(cal: Calibration) -> str:
    """One line on a fitted map, for the training's and the command's output."""
    i = cal.info
    held = "" if i.get("ece_held_out") is None else f" -> {i['ece_held_out']:.3f} (two-fold estimate on held-out sentences)"
    return (f"entity scores calibrated on {i.get('entities', 0):,} dev entities ({i.get('correct', 0):,} correct): "
            f"expected calibration error {i.get('ece_uncalibrated', float('nan')):.3f}{held}")


def calibrate_model(model: str, dev: str, *, fmt: str | None = None, options=None, tagger_options=None) -> Calibration:
    """Fit the calibration map of the model folder ``model`` on ``dev`` and record it in its
    ``nerbatch.json`` (written atomically; every other member kept; created for a folder without
    one; a map there that is not valid is removed first). ModelError for a hub id or a
    ``nerbatch.json`` that is not a JSON object."""
    from ..io.atomic import atomic_write
    from ..model.settings import NERBATCH_CONFIG, calibration_of, read_folder_settings

    if not os.path.isdir(model):
        raise ModelError(f"{model}: not a model folder", hint="calibrate a folder written by `nerbatch train` (or any model folder)")
    path = os.path.join(model, NERBATCH_CONFIG)
    saved: dict = {}
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as fh:
                saved = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read it as JSON ({exc})", hint="restore it as training wrote it") from None
        if not isinstance(saved, dict):
            raise ModelError(f"{path}: holds a JSON {type(saved).__name__}, not an object", hint="restore it as training wrote it")
    try:
        calibration_of(model, saved)
    except ModelError:  # a damaged map: the tagger would refuse the folder
        del saved["calibration"]
        atomic_write(path, json.dumps(saved, indent=2) + "\n")
    read_folder_settings(model)  # a folder a tagger can run (labels, config), before tagging anything
    cal = fit_on_dev(model, dev, fmt=fmt, options=options, tagger_options=tagger_options)
    saved["calibration"] = cal.to_json()
    atomic_write(path, json.dumps(saved, indent=2) + "\n")
    return cal
