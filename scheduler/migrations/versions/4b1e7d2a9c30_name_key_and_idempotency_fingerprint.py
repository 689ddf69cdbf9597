"""job.name_key (unique among live jobs after NFC + case folding); job_run.idempotency_fingerprint

Existing live jobs whose names collide after normalisation keep working: the later ones get a key
suffixed with their id (``name#id``), so the new unique index can be built; archiving or renaming
is up to their owners.

Revision ID: 4b1e7d2a9c30
Revises: b7e41d2c9f30
Create Date: 2026-12-02 09:00:00.000000
"""
import unicodedata

from alembic import op
import sqlalchemy as sa


revision = '4b1e7d2a9c30'
down_revision = 'b7e41d2c9f30'
branch_labels = None
depends_on = None

LIVE = sa.text("status != 'ARCHIVED'")


def _key(name: str) -> str:
    # Frozen copy of scheduler.models.name_key at the time of this migration.
    return unicodedata.normalize("NFC", name).casefold()


def upgrade() -> None:
    op.add_column('job', sa.Column('name_key', sa.String(length=600), nullable=True))
    conn = op.get_bind()
    job = sa.table('job', sa.column('id', sa.Integer), sa.column('name', sa.String),
                   sa.column('status', sa.String), sa.column('name_key', sa.String))
    taken: set[str] = set()
    for job_id, name, status in conn.execute(sa.select(job.c.id, job.c.name, job.c.status).order_by(job.c.id)):
        key = _key(name)
        if status != 'ARCHIVED':
            if key in taken:
                key = f"{key}#{job_id}"
            taken.add(key)
        conn.execute(job.update().where(job.c.id == job_id).values(name_key=key))
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.alter_column('name_key', existing_type=sa.String(length=600), nullable=False)
        batch_op.drop_index('uq_job_name_live', sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.create_index('uq_job_name_key_live', ['name_key'], unique=True, sqlite_where=LIVE,
                              postgresql_where=LIVE)
    op.add_column('job_run', sa.Column('idempotency_fingerprint', sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_column('idempotency_fingerprint')
    with op.batch_alter_table('job', schema=None) as batch_op:
        batch_op.drop_index('uq_job_name_key_live', sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.create_index('uq_job_name_live', ['name'], unique=True, sqlite_where=LIVE, postgresql_where=LIVE)
        batch_op.drop_column('name_key')
