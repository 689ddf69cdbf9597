"""Migrations of both trees: the core's tables, then the billing tables of the installed job types."""

from __future__ import annotations

from scheduler.db import check_database, make_engine
from scheduler.settings import Settings


def migrate_all(settings: Settings) -> None:
    """Apply the core's migrations, then the billing tables' migrations of the installed job types."""
    from scheduler.migrate import upgrade

    engine = make_engine(settings.resolved_database_url)
    check_database(engine)
    upgrade(engine)
    engine.dispose()
    from workers.billing import migrate_billing

    billing = make_engine(settings.resolved_billing_database_url)
    check_database(billing)
    migrate_billing(billing)
    billing.dispose()
