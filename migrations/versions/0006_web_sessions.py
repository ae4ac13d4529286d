"""Web page sessions (issue 15): a session cookie stands for the token it was exchanged for.

Only the SHA-256 of the cookie's secret is stored; a session ends at sign-out (row deleted),
at its expiry, and with its token (revoked, expired or deleted).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE web_sessions (
            id_hash     bytea PRIMARY KEY,
            token_id    bigint NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
            csrf        text NOT NULL,
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX web_sessions_expires ON web_sessions (expires_at)")
    op.execute("CREATE INDEX web_sessions_token ON web_sessions (token_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS web_sessions")
