"""outbox_built_when_sent

Revision ID: 81c992caec23
Revises: aca3cfbf490b
Create Date: 2026-11-28 18:44:20.227894

An outbox row no longer holds its message: the sender builds it when it sends it, so
``outbox_message.message`` is kept only for rows queued before (and is ``NULL`` since).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "81c992caec23"
down_revision = "aca3cfbf490b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column("message", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # The old schema cannot hold a row without its message. Rows already handed over lose
    # nothing by going; a row still to be sent would lose its e-mail, so refuse instead.
    connection = op.get_bind()
    unsent = connection.scalar(
        sa.text("SELECT count(*) FROM outbox_message WHERE message IS NULL AND status != 'sent'")
    )
    if unsent:
        raise RuntimeError(
            f"{unsent} outbox messages are still to be sent: let the sender deliver them "
            "(or remove them) before downgrading"
        )
    op.execute("DELETE FROM outbox_message WHERE message IS NULL")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.alter_column("message", existing_type=sa.LargeBinary(), nullable=False)
