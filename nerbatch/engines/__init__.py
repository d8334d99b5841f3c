"""Execution engines: ``local`` (this process) drives the tagger and the writers over file jobs."""

from ..plan import FileJob, plan_jobs
from .local import TagSummary, tag_files

__all__ = ["FileJob", "TagSummary", "plan_jobs", "tag_files"]
