"""Running ``nerbatch tag``: the plan, manifests and locks, the local and Ray engines, and the tag service."""

from .local import RunOptions, TagSummary
from .plan import FileJob, plan_jobs

__all__ = ["FileJob", "RunOptions", "TagSummary", "plan_jobs"]
