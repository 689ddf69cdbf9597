"""usage tables: usage_files, usage_events, usage_daily, usage_rejects, now usage mediation's own

The tables moved to the usage_mediation job type's tree (workers/mediation/migrations), which creates them
where this revision did not; databases that ran this revision before keep them as they are.

Revision ID: f4d8e69992f3
Revises: d7ef4bf2617a
Create Date: 2026-11-27 13:00:00
"""
revision = 'f4d8e69992f3'
down_revision = 'd7ef4bf2617a'
branch_labels = ('usage',)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
