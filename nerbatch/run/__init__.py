"""Execution engines: ``local`` (this process) drives the tagger and the writers over file jobs."""

from .local import TagSummary, tag_files
from .plan import FileJob, plan_jobs

__all__ = ["FileJob", "TagSummary", "plan_jobs", "tag_files"]
