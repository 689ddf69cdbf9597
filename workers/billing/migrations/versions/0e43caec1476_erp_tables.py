"""erp tables: erp_deliveries (one row per record delivered to a target), now the ERP transfer's own

The table moved to the erp_transfer job type's tree (workers/erp/migrations), which creates it where this
revision did not; databases that ran this revision before keep it as it is.

Revision ID: 0e43caec1476
Revises: d7ef4bf2617a
Create Date: 2026-11-27 13:00:00
"""
revision = '0e43caec1476'
down_revision = 'd7ef4bf2617a'
branch_labels = ('erp',)
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
