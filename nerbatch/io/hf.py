"""Hugging Face datasets: ``save_to_disk`` folders, local data folders and hub ids (``hf:conll2003``).

Inputs (``read_dataset``): a folder written by ``Dataset.save_to_disk``/``DatasetDict.save_to_disk``
(read memory-mapped, row by row), a local folder that ``datasets.load_dataset`` understands (data
files, or a dataset card with ``configs``; ``--input-format hf`` for a plain folder of data files), or
``hf:ID`` for the hub (``load_dataset(ID, --config, split=--split, streaming=True)``: needs network
access, or the hub cache). A dataset with several splits needs ``--split``. Integer tag columns
(``ner_tags``) are mapped to their names through the ``ClassLabel`` feature; the record keeps its
columns as they are, plus ``tags`` (the names) for the writers, so a JSONL or Parquet output holds
every input column, the gold tag names and the predictions.

Output (``DatasetWriter``, ``--output-format hf``): a ``save_to_disk`` folder with the input's columns
and features (``ClassLabel`` included) plus ``pred_tags`` and ``pred_scores``. Rows go to Parquet
parts as for a Parquet output (so checkpoints and ``--resume`` work the same way); commit turns them
into the dataset folder beside the target and renames it into place.

``datasets`` is imported only when a dataset is read or written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Iterator

from ..core.record import Sentence
from ..errors import InputError, OutputError
from .base import ReadOptions
from .parquet import ParquetWriter

HUB_PREFIX = "hf:"
_SAVED = ("dataset_dict.json", "state.json")  # what save_to_disk writes (DatasetDict, Dataset)

__all__ = [
    "HUB_PREFIX", "DatasetRow", "DatasetWriter", "is_dataset", "is_saved_dataset", "open_dataset", "read_dataset",
    "saved_dataset_part",
]


def is_saved_dataset(path: str) -> bool:
    """A folder written by ``save_to_disk``."""
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in _SAVED)


def saved_dataset_part(folder: str, names: list[str]) -> InputError | None:
    """What is wrong when a folder walk meets ``save_to_disk`` files (``dataset_info.json``; ``names``:
    the folder's files), which are no input files: a Dataset folder without its ``state.json``, or the
    split folder of a DatasetDict whose ``dataset_dict.json`` is missing. None for other folders."""
    if "dataset_info.json" not in names:
        return None
    if "state.json" not in names:
        return InputError(
            "a Hugging Face save_to_disk folder without its state.json, so not a dataset nerbatch can read",
            path=folder,
            hint="copy the whole folder save_to_disk wrote: state.json, dataset_info.json and the .arrow files",
        )
    return InputError(
        "a split of a Hugging Face save_to_disk DatasetDict whose dataset_dict.json is missing",
        path=folder,
        hint="pass this split folder itself as the input, or restore dataset_dict.json in the folder above it",
    )


def _has_dataset_card(path: str) -> bool:
    """A folder whose README.md front matter declares the dataset's ``configs`` (load_dataset reads it)."""
    try:
        with open(os.path.join(path, "README.md"), encoding="utf-8", errors="replace") as fh:
            head = fh.read(1 << 16)
    except OSError:
        return False
    if not head.startswith("---"):
        return False
    front = head[3:].split("\n---", 1)[0]
    return any(line.startswith(("configs:", "dataset_info:")) for line in front.splitlines())


def split_ref(path: str) -> tuple[str, str | None]:
    """``("hf:conll2003", "validation")`` for ``hf:conll2003@validation``: a split named in the
    path (for ``--dev`` beside a ``--train`` of another split); ``(path, None)`` otherwise."""
    if "@" in path and not os.path.exists(path):
        base, split = path.rsplit("@", 1)
        if split and (base.startswith(HUB_PREFIX) or os.path.isdir(base)):
            return base, split
    return path, None


def is_dataset(path: str) -> bool:
    """``hf:ID``, a ``save_to_disk`` folder, or a folder with a dataset card naming its configs
    (each with an optional ``@SPLIT``)."""
    path = split_ref(path)[0]
    if path.startswith(HUB_PREFIX):
        return True
    return os.path.isdir(path) and (is_saved_dataset(path) or _has_dataset_card(path))


def _pick_split(ds, path: str, split: str | None):
    """The one split to read of a dataset dict."""
    names = list(ds.keys())
    if split is not None:
        if split not in ds:
            raise InputError(f"no split {split!r} (splits: {', '.join(names)})", path=path, hint="pass --split NAME")
        return ds[split]
    if len(names) == 1:
        return ds[names[0]]
    raise InputError(f"the dataset has the splits {', '.join(names)}: pick one", path=path, hint="pass --split NAME")


def open_dataset(path: str, options: ReadOptions = ReadOptions()):
    """The ``datasets.Dataset`` (memory-mapped) or ``IterableDataset`` (streamed) that ``path`` names."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - an install requirement
        raise InputError("Hugging Face dataset inputs need the datasets package", path=path, hint="pip install datasets") from None
    datasets.disable_progress_bars()
    path, named_split = split_ref(path)
    if named_split is not None:
        from dataclasses import replace

        options = replace(options, split=named_split)
    try:
        if path.startswith(HUB_PREFIX):
            ds = datasets.load_dataset(path[len(HUB_PREFIX):], options.config, split=None, streaming=True)
        elif is_saved_dataset(path):
            if options.config is not None:
                raise InputError("--config applies to hub ids and load_dataset folders, not to a save_to_disk folder", path=path)
            ds = datasets.load_from_disk(path)
        elif os.path.isdir(path):
            ds = datasets.load_dataset(path, options.config, split=None, streaming=True)
        else:
            raise InputError("no such dataset folder", path=path, hint="pass a save_to_disk folder, a data folder or hf:ID")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; all mean "cannot load"
        hint = "hf: ids need network access to the Hugging Face hub (or its cache)" if path.startswith(HUB_PREFIX) else None
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot load the dataset: {message}", path=path, hint=hint) from None
    if isinstance(ds, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        ds = _pick_split(ds, path, options.split)
    elif options.split is not None and str(getattr(ds, "split", None) or "") not in ("", options.split):
        raise InputError(f"no split {options.split!r} (this dataset is {ds.split!r})", path=path)
    return ds


def label_names(feature: Any) -> list[str] | None:
    """The names of a ``ClassLabel`` feature, or of the ``ClassLabel`` inside a list feature."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    if names is None:
        return None
    return list(names)


class DatasetRow(dict):
    """A dataset row as read (every column), with the Arrow schema of the output's columns
    (``arrow_schema``: the input's features plus ``tags``, ``pred_tags``, ``pred_scores``), which a
    Parquet or dataset output takes as its own (``ClassLabel`` features stay in its metadata)."""

    arrow_schema: Any = None


def _output_schema(features, added_tags: bool):
    if not features:
        return None
    from datasets import Features, List, Value

    feats = dict(features)
    if added_tags:
        feats["tags"] = List(Value("string"))
    feats["pred_tags"] = List(Value("string"))
    feats["pred_scores"] = List(Value("float32"))
    return Features(feats).arrow_schema


def read_dataset(path: str, options: ReadOptions = ReadOptions()) -> Iterator[Sentence]:
    """Stream the sentences of a dataset's rows; ``line`` is the 1-based row number."""
    from .jsonl import record_to_sentences

    ds = open_dataset(path, options)
    features = getattr(ds, "features", None) or {}
    keys = [options.tags_key] if options.tags_key else ["tags", "ner_tags"]
    names = {k: label_names(features.get(k)) for k in keys + [options.pred_key] if k in features}
    names = {k: v for k, v in names.items() if v}
    # the gold names go into ``tags`` for the writers when the gold column holds ClassLabel ids
    gold = next((k for k in keys if k in features), None)
    add_tags = gold is not None and gold in names and "tags" not in features
    schema = _output_schema(features, add_tags)
    index = 0
    row_no = 0
    for row in ds:
        row_no += 1
        obj = dict(row)
        try:
            for key, labels in names.items():
                value = obj.get(key)
                if isinstance(value, list):
                    bad = [i for i in value if not isinstance(i, int) or not 0 <= i < len(labels)]
                    if bad:
                        raise InputError(
                            f"{key!r} holds the label id {bad[0]!r}, which its ClassLabel does not name "
                            f"({len(labels)} names)",
                            path=path,
                            line=row_no,
                        )
                    obj[key] = [labels[i] for i in value]
            sents = record_to_sentences(obj, options, path, row_no, index, "hf")
        except InputError as exc:
            if options.on_error != "skip":
                raise
            yield Sentence(tokens=[], path=path, line=row_no, source=repr(row)[:2000], error=str(exc))
            continue
        source = DatasetRow(row)
        if add_tags:
            source["tags"] = obj[gold]
        source.arrow_schema = schema
        for sent in sents:
            sent.source = source
        yield from sents
        index += len(sents)


class DatasetWriter(ParquetWriter):
    """A ``save_to_disk`` folder at ``path``: the rows of a Parquet output, turned into a dataset on commit."""

    def commit(self, before_rename=None) -> None:
        self.finish_or_abort()
        joined = self.out.close_unpublished()
        try:
            if joined is not None:
                _publish(joined, self.path, self.schema, before_rename)
        finally:
            if joined is not None and os.path.exists(joined):
                os.unlink(joined)


def _publish(parquet: str, target: str, schema, before_rename) -> None:
    """Build the dataset folder from the joined Parquet file beside ``target``, then rename it into place."""
    import datasets

    datasets.disable_progress_bars()
    folder, name = os.path.split(os.path.abspath(target))
    work = tempfile.mkdtemp(prefix=f".{name}.", suffix=".nerbatch-hf", dir=folder)
    try:
        features = datasets.Features.from_arrow_schema(schema) if schema is not None else None
        ds = datasets.Dataset.from_parquet(parquet, features=features, cache_dir=os.path.join(work, "cache"))
        built = os.path.join(work, "dataset")
        ds.save_to_disk(built)
        del ds
        if before_rename is not None:
            before_rename(os.stat(built))
        if os.path.lexists(target):
            if not is_saved_dataset(target):
                raise OutputError(f"{target}: exists and is not a Hugging Face dataset folder; not replaced")
            old = os.path.join(work, "old")
            os.rename(target, old)
        os.rename(built, target)
    except OSError as exc:
        raise OutputError(f"{target}: write failed: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
