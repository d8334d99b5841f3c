"""``nerbatch tag`` as one library call: :func:`tag_files` does everything the command does.

Plan the jobs (inputs to outputs), check every path the run writes, build the tagger, cut raw text
as the model's training text was cut, check report inputs, plan what is left (``resume``), run the
local or Ray engine, and score the outputs for a report. The command line parses options and calls
this function; so do the benchmarks and anyone tagging files from Python.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

from ..io import ReadOptions
from ..io.base import STDIO
from ..io.paths import check_write_paths, skipped_note
from ..tagging.tagger import Tagger, TaggerOptions
from .local import RunOptions, TagSummary, plan, run_local
from .plan import plan_jobs

__all__ = ["TagResult", "tag_files"]

ENGINES = ("local", "ray")


@dataclass
class TagResult:
    """What a :func:`tag_files` run did: ``summary`` counts files, sentences, entities and seconds
    (``summary.line()`` is the command's summary line); ``report`` holds the scores when a report was
    asked for (the dict ``nerbatch evaluate --json`` writes), else None; ``notes`` are the one-line
    notices of the run (also given to ``notify`` as they happen)."""

    summary: TagSummary
    report: dict | None = None
    notes: list[str] | None = None


def tag_files(
    inputs: Sequence[str],
    output: str | None = None,
    *,
    model: str | None = None,
    tagger: Tagger | None = None,
    input_format: str | None = None,
    output_format: str | None = None,
    glob: str | None = None,
    read_options: ReadOptions = ReadOptions(),
    tokenizer_given: bool = False,
    tagger_options: TaggerOptions = TaggerOptions(),
    report: str | None = None,
    report_json: str | None = None,
    score: bool = False,
    resume: bool = False,
    checkpoint_every: int = 10_000,
    on_error: str = "fail",
    log_json: str | None = None,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    one_model: bool | None = None,
    part_size: int | None = None,
    progress: bool = False,
    notify: Callable[[str], None] | None = None,
    min_score: float | None = None,
    review: str | None = None,
    scores: bool = False,
) -> TagResult:
    """Tag ``inputs`` (files, folders, ``-`` for stdin, ``hf:`` datasets) with ``model`` into ``output``.

    ``output``: a file (one input), a folder (several inputs, or a folder input: names mirrored, the
    output format's extension), or None / ``-`` for stdout. Formats come from the extensions unless
    given. ``read_options``: columns, keys, encoding, raw-text layout and word tokenizer (the model's
    recorded layout and tokenizer apply to raw text unless ``read_options.layout`` is set or
    ``tokenizer_given``). ``report``/``report_json``: score the gold tags of the inputs and write the
    text/JSON report there (``score=True``: score without writing, the scores in the result).
    ``tagger``: a :class:`~nerbatch.tagging.tagger.Tagger` already built (and maybe loaded) to reuse
    across calls, instead of ``model`` and ``tagger_options``. ``resume``: skip outputs complete for the same input, model and options, and continue interrupted
    ones from their checkpoint. ``on_error="skip"``: a bad record is left out and logged in
    ``OUTPUT.rejects.jsonl`` (``result.summary.skipped`` counts them). ``engine="ray"`` runs the model
    on Ray (``address``, ``workers``; an input of more than ``part_size`` bytes, default
    :data:`nerbatch.io.split.PART_SIZE`, is cut into parts written to a parts folder). ``workers`` (local
    engine): processes that do the CPU work of tagging; ``one_model``: the model runs once, in this process, and
    the workers feed it (word pieces, batches, decoding; the default on a GPU), else each worker runs a copy of it
    (the default on the CPU; :mod:`nerbatch.tagging.pool`). ``min_score``: entities
    scored below it (0 to 1) become ``O``; ``review``: with it, the dropped and borderline entities go to this
    JSONL file, in the span format ``train`` reads (:mod:`nerbatch.run.review`). ``scores``: CoNLL outputs get a
    word-score column. A model without a calibration map (:mod:`nerbatch.core.calibration`) says so in one note.
    Raises :class:`nerbatch.errors.NerbatchError` subclasses for
    bad inputs, options and models, before anything is written where it can tell.

    >>> result = tag_files(["test.conll"], "test.tagged.conll", model="model/")  # doctest: +SKIP
    >>> result.summary.sentences  # doctest: +SKIP
    """
    from ..errors import InputError

    if (model is None) == (tagger is None):
        raise InputError("give a model or a tagger (one of them)")
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    if on_error not in ("fail", "skip"):
        raise InputError(f"unknown on_error {on_error!r}", hint="use fail or skip")
    _check_thresholds(min_score, review)
    if one_model and (engine != "local" or workers is None or workers < 2):
        raise InputError("--one-model goes with the local engine's --workers N (2 or more): the workers feed the one model",
                         hint="add --workers N, or drop --one-model")
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if notify is not None:
            notify(text)

    read_options = replace(read_options, on_error=on_error)
    skipped: list[str] = []
    jobs = plan_jobs(list(inputs), output, input_fmt=input_format, output_fmt=output_format, glob=glob, skipped=skipped)
    if skipped:
        note(skipped_note(skipped))
    check_write_paths(
        jobs, {"--report": report, "--report-json": report_json, "--log-json": log_json, "--review": review},
        rejects=on_error == "skip",
        models=[model if tagger is None else tagger.model_name],
    )
    if tagger is None:
        tagger = Tagger(model, tagger_options)
    pool = None
    try:
        read_options = _text_contract(tagger.model_name, read_options, [j.input_format for j in jobs],
                                      tokenizer_given=tokenizer_given, note=note)
        uncalibrated = not tagger.options.raw_scores and _uncalibrated(tagger.model_name)
        sink = None
        if report or report_json or score:
            from ..evaluation.evaluate import ReportSink, check_report_inputs
            from ..evaluation.scoring import Scorer

            check_report_inputs(jobs, read_options, labels=tagger.labels, resume=resume)  # before tagging anything
            sink = ReportSink(Scorer(), read_options, scores=scores)
        run = RunOptions(resume=resume, checkpoint_every=checkpoint_every, log_json=log_json, min_score=min_score,
                         review=review, scores=scores)
        if engine == "ray":  # each Ray worker plans its own part of the run, where it reads the inputs
            from .ray import run_ray

            summary = run_ray(jobs, tagger, options=read_options, scores=sink, progress=progress, run=run,
                              workers=workers, address=address, **({"part_size": part_size} if part_size else {}))
        else:
            from ..io.parts import is_parts_folder

            for job in jobs:
                if job.output != STDIO and is_parts_folder(job.output):
                    raise InputError(
                        "is a parts folder (an --engine ray output): the local engine writes one file and never replaces a folder",
                        path=job.output, hint="tag with --engine ray again, or choose another -o",
                    )
            runner = tagger
            planned = plan(jobs, tagger, read_options, run)  # what is up to date, resumed or fresh
            if workers is None and any(p.status != "up to date" for p in planned):
                from ..tagging.pool import default_workers

                workers = default_workers(tagger.options)  # a GPU gets feeding workers, the CPU one process
            if workers is not None and workers > 1:  # the tagger's work in worker processes
                from ..tagging.pool import TaggerPool

                runner = pool = TaggerPool(tagger, workers, threads=tagger.options.threads, feed=one_model)
            summary = run_local(planned, runner, options=read_options, scores=sink, progress=progress, run=run)
        if uncalibrated:  # said after the run, so that an error stays the only line
            note(f"{tagger.model_name} has no calibration map: entity scores are the mean of their words' probabilities, "
                 f"not calibrated probabilities (`nerbatch calibrate --model {tagger.model_name} --dev DEV` fits one)")
        result = TagResult(summary, notes=notes)
        if sink is not None:
            from ..evaluation.evaluate import write_report

            scores = sink.scorer.result()
            scores["files"] = list(inputs)
            scores["model"] = model if model is not None else tagger.model_name  # a URL as given, not its local copy
            write_report(scores, text_path=report, json_path=report_json)
            if not scores["sentences"]:
                note("the inputs hold no sentences: the report counts nothing")
            result.report = scores
        return result
    finally:
        if pool is not None:
            pool.close()


def _text_contract(model: str, read_options: ReadOptions, formats: list[str], *, tokenizer_given: bool,
                   note: Callable[[str], None]) -> ReadOptions:
    """Cut raw text as the model's training text was cut (nerbatch.json), noting where a run differs."""
    from ..io.text import apply_contract
    from ..model.settings import read_model_config, text_contract

    read_options, notes = apply_contract(
        read_options, text_contract(read_model_config(model)), formats,
        tokenizer_given=tokenizer_given, layout_given=read_options.layout is not None,
    )
    for text in notes:
        note(text)
    return read_options


def _check_thresholds(min_score: float | None, review: str | None) -> None:
    import math

    from ..errors import InputError

    if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float))
                                  or not math.isfinite(min_score) or not 0 <= min_score <= 1):
        raise InputError(f"min_score {min_score!r} is not a number from 0 to 1", hint="entity scores are probabilities")
    if review is not None and min_score is None:
        raise InputError("--review needs --min-score: it lists the entities that threshold drops or nearly drops",
                         hint="add --min-score S (e.g. 0.5)")
    if review == "-":
        raise InputError("--review needs a file name, not stdout", hint="e.g. --review review.jsonl")


def _uncalibrated(model: str) -> bool:
    """Has the model no calibration map (:mod:`nerbatch.core.calibration`) in its nerbatch.json? (A
    damaged one is a ModelError.)"""
    from ..model.settings import calibration_of, read_model_config

    return calibration_of(model, read_model_config(model)) is None
