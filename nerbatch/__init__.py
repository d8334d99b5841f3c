"""nerbatch: batch named-entity recognition over files, and the same tagger in memory.

The Python API (importing the package is cheap: torch and transformers load only when a model is used):

- :func:`tag_files` does what ``nerbatch tag`` does (plan, checks, engine, report);
- :func:`train` (with :class:`TrainOptions`) does what ``nerbatch train`` does;
- :func:`evaluate` does what ``nerbatch evaluate`` does;
- :class:`Tagger` tags strings or token lists in memory (``Tagger.from_pretrained("model/").tag([...])``).

The package is organised by stage of the data flow: see docs/architecture.md.
"""

import os as _os

__version__ = "0.2.0"

# torch's OpenMP threads sleep when they wait instead of spinning. Spinning threads fight for the cores with
# everything else on the machine, nerbatch's own reading thread included: on 2 busy Zen 4 cores one forward of a
# tiny BERT took 58 ms with spinning threads against 3.3 ms sleeping; on quiet cores the pipeline ceiling
# (benchmarks/pipeline_ceiling.py, no context) went from 4,169 to 5,396 sentences/s and the headline model's
# tagging time stayed the same. It must be set before torch loads; a user's own OMP_WAIT_POLICY is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
