"""The public API of the core for job types: everything a job type needs, and all it may import of the core.

A job type implements :class:`JobType` and works on the :class:`RunContext` it is given. It stages the
items a run plans, reads them back and records their outcomes through :class:`RunItems` — never by
writing the core's tables — and writes its own tables with set-based SQL, helped by :class:`SqlDialect`
and :func:`insert_or_ignore`. What it records of a failure is :func:`explain`'s words, never an exception's
class name. Besides this package a job type may import ``scheduler.errors``,
``scheduler.settings``, ``scheduler.clock``, ``scheduler.limits`` and ``scheduler.money`` (the import-linter
contracts say so).
"""

from scheduler.error_text import explain
from scheduler.jobkit.items import Item, ItemWriter, RunItems, detail_of
from scheduler.jobkit.runs import chunk_spec, chunk_specs, ended_runs, latest_summary_value
from scheduler.jobkit.sql import (
    IN_LIST_BATCH,
    SqlDialect,
    UTCDateTime,
    batched,
    insert_or_ignore,
    insert_or_ignore_select,
    insert_or_ignore_statement,
    same_database,
)
from scheduler.jobtypes import JobType, NoRunProperties, RunContext
from scheduler.models import ItemOutcome

__all__ = [
    "IN_LIST_BATCH",
    "Item",
    "ItemOutcome",
    "ItemWriter",
    "JobType",
    "NoRunProperties",
    "RunContext",
    "RunItems",
    "SqlDialect",
    "UTCDateTime",
    "batched",
    "chunk_spec",
    "chunk_specs",
    "detail_of",
    "ended_runs",
    "explain",
    "insert_or_ignore",
    "insert_or_ignore_select",
    "insert_or_ignore_statement",
    "latest_summary_value",
    "same_database",
]
