"""First-run fixes (issue 11): token names reusable after revocation; token changes announced.

A name is unique among tokens not revoked, so `unity token create reader` works again after
`unity token revoke reader` (the revoked row stays for the record). Every change to
api_tokens sends a NOTIFY on `unity_tokens`, so API processes drop their cached grants at once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_name_key")
    op.execute(
        "CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (name) WHERE revoked_at IS NULL"
    )
    op.execute(
        """
        CREATE FUNCTION api_tokens_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('unity_tokens', '');
            RETURN NULL;
        END
        $$
        """
    )
    # Not on last_used_at: the API touches that on use, which must not flush every cache.
    op.execute(
        "CREATE TRIGGER api_tokens_changed"
        " AFTER UPDATE OF revoked_at, expires_at, scopes, token_hash OR DELETE ON api_tokens"
        " FOR EACH ROW EXECUTE FUNCTION api_tokens_notify()"
    )
    op.execute(
        "CREATE TRIGGER api_tokens_truncated AFTER TRUNCATE ON api_tokens"
        " FOR EACH STATEMENT EXECUTE FUNCTION api_tokens_notify()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS api_tokens_truncated ON api_tokens")
    op.execute("DROP TRIGGER IF EXISTS api_tokens_changed ON api_tokens")
    op.execute("DROP FUNCTION IF EXISTS api_tokens_notify()")
    op.execute("DROP INDEX IF EXISTS api_tokens_active_name")
    # Names reused after a revocation: only the newest row of each name can keep it.
    op.execute(
        "DELETE FROM api_tokens t USING api_tokens newer"
        " WHERE newer.name = t.name AND newer.id > t.id"
    )
    op.execute("ALTER TABLE api_tokens ADD CONSTRAINT api_tokens_name_key UNIQUE (name)")
