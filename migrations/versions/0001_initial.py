"""Initial schema: series catalogue, narrow samples, plugin runs, events.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE series (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            host        text NOT NULL,
            plugin      text NOT NULL,
            instance    text NOT NULL DEFAULT '',
            name        text NOT NULL,
            labels      jsonb NOT NULL DEFAULT '{}',
            unit        text NOT NULL DEFAULT '',
            kind        text NOT NULL DEFAULT 'gauge' CHECK (kind IN ('gauge', 'counter')),
            first_seen  timestamptz NOT NULL DEFAULT now(),
            last_seen   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT series_identity UNIQUE (host, plugin, instance, name, labels)
        )
        """
    )
    op.execute("CREATE INDEX series_name ON series (name)")
    # Narrow rows and no foreign key: that is what keeps COPY near the disk's speed.
    op.execute(
        """
        CREATE TABLE samples (
            time        timestamptz NOT NULL,
            series_id   bigint NOT NULL,
            value       double precision NOT NULL,
            CONSTRAINT samples_series_time UNIQUE (series_id, time)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE plugin_runs (
            time         timestamptz NOT NULL,
            host         text NOT NULL,
            plugin       text NOT NULL,
            instance     text NOT NULL DEFAULT '',
            status       text NOT NULL CHECK (status IN ('ok', 'degraded', 'error')),
            message      text NOT NULL DEFAULT '',
            duration_ms  double precision NOT NULL DEFAULT 0,
            samples      integer NOT NULL DEFAULT 0,
            CONSTRAINT plugin_runs_identity UNIQUE (host, plugin, instance, time)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE events (
            time      timestamptz NOT NULL,
            host      text NOT NULL,
            plugin    text NOT NULL,
            instance  text NOT NULL DEFAULT '',
            kind      text NOT NULL,
            severity  text NOT NULL DEFAULT 'info',
            message   text NOT NULL DEFAULT '',
            data      jsonb NOT NULL DEFAULT '{}',
            CONSTRAINT events_identity UNIQUE (host, plugin, instance, kind, time)
        )
        """
    )


def downgrade() -> None:
    for table in ("events", "plugin_runs", "samples", "series"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
