"""Execution engines: ``local`` (this process) drives the tagger and the writers over file jobs."""

from .local import FileJob, TagSummary, plan_jobs, tag_files

__all__ = ["FileJob", "TagSummary", "plan_jobs", "tag_files"]
