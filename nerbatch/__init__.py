"""nerbatch: batch named-entity recognition over files, and the same tagger in memory.

The Python API (importing the package is cheap: torch and transformers load only when a model is used):

- :func:`tag_files` does what ``nerbatch tag`` does (plan, checks, engine, report);
- :func:`train` (with :class:`TrainOptions`) does what ``nerbatch train`` does;
- :func:`evaluate` does what ``nerbatch evaluate`` does;
- :class:`Tagger` tags strings or token lists in memory (``Tagger.from_pretrained("model/").tag([...])``).

The package is organised by stage of the data flow: see docs/architecture.md.
"""

__version__ = "0.2.0"

__all__ = ["Tagger", "TaggerOptions", "ReadOptions", "TrainOptions", "tag_files", "train", "evaluate", "__version__"]

_EXPORTS = {
    "Tagger": ("nerbatch.tagging.tagger", "Tagger"),
    "TaggerOptions": ("nerbatch.tagging.tagger", "TaggerOptions"),
    "ReadOptions": ("nerbatch.io.base", "ReadOptions"),
    "TrainOptions": ("nerbatch.training.train", "TrainOptions"),
    "tag_files": ("nerbatch.run.service", "tag_files"),
    "train": ("nerbatch.training.train", "train"),
    "evaluate": ("nerbatch.evaluation.evaluate", "evaluate"),
}


def __getattr__(name: str):
    """The API's names, imported on first use (so ``import nerbatch`` stays light)."""
    if name in _EXPORTS:
        import importlib

        module, attr = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nerbatch' has no attribute {name!r}")
