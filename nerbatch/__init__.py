"""nerbatch: batch named-entity recognition over files.

The package is organised by stage of the data flow (see README "Architecture"):
read (``nerbatch.io``) -> encode/batch (``nerbatch.tagging.batching``, ``nerbatch.tagging.align``)
-> tag (``nerbatch.tagging.tagger``) -> write (``nerbatch.io``) -> report (``nerbatch.evaluation.evaluate``).
Importing the package is cheap: torch and transformers load only when a model is used.
"""

__version__ = "0.1.0"
