"""Plugin registry identity (issue 13): what each installed plugin is, apart from where it runs.

``plugin_catalogue`` holds one row per plugin id known to the hub's install (the built-ins of
its ``unity.plugins`` entry points): metadata and the real config schema. ``unity migrate`` and
``unity up`` refresh it (compose/catalogue.py); the API reads it, so it never imports collector
code, and a registry entry whose own schema is empty is checked against its plugin's.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE plugin_catalogue (
            plugin        text PRIMARY KEY,
            name          text NOT NULL DEFAULT '',
            version       text NOT NULL DEFAULT '',
            description   text NOT NULL DEFAULT '',
            config_schema jsonb NOT NULL DEFAULT '{}',
            builtin       boolean NOT NULL DEFAULT true,
            updated_at    timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS plugin_catalogue")
