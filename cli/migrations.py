"""Every migration tree of an installation: the core's, the billing ledger's, and each installed job type's own."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from scheduler.db import check_database, make_engine
from scheduler.jobtypes import JobType, load_registry
from scheduler.migrate import CORE_TREE, MigrationTree, job_type_tree, tree_gap, upgrade
from scheduler.settings import Settings
from workers import billing

BILLING_TREE = MigrationTree(name="billing tables", versions=billing.MIGRATIONS, version_table=billing.VERSION_TABLE)
"""The billing ledger's tree (accounts, invoices, payments, dunning actions, the general ledger)."""


def billing_trees(job_types: Iterable[JobType]) -> list[MigrationTree]:
    """The trees of the billing database: the ledger's, then the given job types' own (a type not given is left
    alone, tables and all)."""
    return [BILLING_TREE, *(tree for jt in job_types if (tree := job_type_tree(jt)) is not None)]


def migrate_billing_database(engine: Engine, job_types: Iterable[JobType]) -> None:
    """Bring the billing ledger's tables and the given job types' own tables to their newest revisions."""
    for tree in billing_trees(job_types):
        upgrade(engine, tree)


def _databases(settings: Settings) -> list[tuple[str, list[MigrationTree]]]:
    """Each database of this installation with its trees (the installed job types are those of the
    ``scheduler.job_types`` entry points and ``SCHEDULER_EXTRA_JOB_TYPES``)."""
    job_types = load_registry(settings).all()
    return [(settings.resolved_database_url, [CORE_TREE]),
            (settings.resolved_billing_database_url, billing_trees(job_types))]


def migrate_all(settings: Settings) -> None:
    """Apply the core's migrations, then the billing ledger's, then each installed job type's own."""
    for url, trees in _databases(settings):
        engine = make_engine(url)
        try:
            check_database(engine)
            for tree in trees:
                upgrade(engine, tree)
        finally:
            engine.dispose()


def schema_gaps(settings: Settings) -> list[str]:
    """What keeps any tree from its head, one phrase each; empty when every tree is at head.

    ``scheduler migrate --check`` runs this before api, beat and workers start (an init container), so
    a release never runs on a schema it was not written for, older or newer.
    """
    gaps: list[str] = []
    for url, trees in _databases(settings):
        engine = make_engine(url)
        try:
            check_database(engine)
            gaps.extend(f"{tree.name} {gap}" for tree in trees if (gap := tree_gap(engine, tree)))
        finally:
            engine.dispose()
    return gaps
