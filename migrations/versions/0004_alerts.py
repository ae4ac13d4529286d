"""Alert rules, state, history, silences, maintenance, channels and deliveries (issue 14).

Evolves 0002's ``alert_rules`` (the whole rule as ``spec``) and ``alerts`` (one row per episode
of one alert: pending, then maybe firing, then resolved).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE alert_rules
            ADD COLUMN kind    text NOT NULL DEFAULT 'threshold'
                               CHECK (kind IN ('threshold', 'absence', 'health', 'event')),
            ADD COLUMN spec    jsonb NOT NULL DEFAULT '{}',
            ADD COLUMN source  text NOT NULL DEFAULT 'api'
                               CHECK (source IN ('api', 'file', 'default')),
            ADD CONSTRAINT alert_rules_severity
                               CHECK (severity IN ('info', 'warning', 'critical'))
        """
    )
    op.execute(
        """
        ALTER TABLE alerts
            ADD COLUMN rule             text NOT NULL DEFAULT '',
            ADD COLUMN fingerprint      text NOT NULL DEFAULT '',
            ADD COLUMN episode          bigint NOT NULL DEFAULT 0,
            ADD COLUMN severity         text NOT NULL DEFAULT 'warning',
            ADD COLUMN unit             text NOT NULL DEFAULT '',
            ADD COLUMN message          text NOT NULL DEFAULT '',
            ADD COLUMN fired_at         timestamptz,
            ADD COLUMN last_notified_at timestamptz,
            ADD COLUMN repeats          integer NOT NULL DEFAULT 0,
            ADD COLUMN acked_at         timestamptz,
            ADD COLUMN acked_by         text,
            ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now()
        """
    )
    # One row per episode: two evaluators upserting the same transition meet on this key.
    op.execute("CREATE UNIQUE INDEX alerts_episode ON alerts (rule_id, fingerprint, episode)")
    op.execute("CREATE INDEX alerts_active ON alerts (state) WHERE state <> 'resolved'")
    op.execute(
        """
        CREATE TABLE alert_history (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            change_id   text NOT NULL UNIQUE,
            rule        text NOT NULL,
            fingerprint text NOT NULL,
            episode     bigint NOT NULL,
            state       text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
            repeat      integer NOT NULL DEFAULT 0,
            severity    text NOT NULL,
            value       double precision,
            labels      jsonb NOT NULL DEFAULT '{}',
            message     text NOT NULL DEFAULT '',
            suppressed  text,
            ts          timestamptz NOT NULL,
            recorded_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX alert_history_ts ON alert_history (ts DESC)")
    op.execute("CREATE INDEX alert_history_rule ON alert_history (rule, ts DESC)")
    op.execute(
        """
        CREATE TABLE alert_silences (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            matchers    text NOT NULL,
            starts_at   timestamptz NOT NULL DEFAULT now(),
            ends_at     timestamptz NOT NULL,
            comment     text NOT NULL DEFAULT '',
            created_by  text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL DEFAULT now(),
            CHECK (ends_at > starts_at)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alert_maintenance (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name        text NOT NULL DEFAULT '',
            matchers    text NOT NULL,
            starts_at   timestamptz NOT NULL,
            duration_s  double precision NOT NULL CHECK (duration_s > 0),
            recurrence  text NOT NULL DEFAULT 'once'
                        CHECK (recurrence IN ('once', 'daily', 'weekly')),
            comment     text NOT NULL DEFAULT '',
            created_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alert_channels (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name         text NOT NULL UNIQUE,
            url          text NOT NULL,
            min_severity text NOT NULL DEFAULT 'warning'
                         CHECK (min_severity IN ('info', 'warning', 'critical')),
            matchers     text NOT NULL DEFAULT '',
            enabled      boolean NOT NULL DEFAULT true,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    # The outbox: rows are written with the history row, then sent (grouped) and updated.
    op.execute(
        """
        CREATE TABLE alert_deliveries (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            change_id       text NOT NULL REFERENCES alert_history (change_id) ON DELETE CASCADE,
            channel_id      bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
            group_key       text NOT NULL,
            status          text NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sent', 'failed')),
            attempts        integer NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            error           text NOT NULL DEFAULT '',
            created_at      timestamptz NOT NULL DEFAULT now(),
            sent_at         timestamptz,
            UNIQUE (change_id, channel_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at)"
        " WHERE status = 'pending'"
    )
    op.execute("CREATE INDEX alert_deliveries_created ON alert_deliveries (created_at DESC)")


def downgrade() -> None:
    for table in (
        "alert_deliveries",
        "alert_channels",
        "alert_maintenance",
        "alert_silences",
        "alert_history",
    ):
        op.execute(f"DROP TABLE IF EXISTS {table}")
    op.execute("DROP INDEX IF EXISTS alerts_episode")
    op.execute("DROP INDEX IF EXISTS alerts_active")
    op.execute(
        """
        ALTER TABLE alerts
            DROP COLUMN rule, DROP COLUMN fingerprint, DROP COLUMN episode,
            DROP COLUMN severity, DROP COLUMN unit, DROP COLUMN message, DROP COLUMN fired_at,
            DROP COLUMN last_notified_at, DROP COLUMN repeats, DROP COLUMN acked_at,
            DROP COLUMN acked_by, DROP COLUMN updated_at
        """
    )
    op.execute(
        """
        ALTER TABLE alert_rules
            DROP CONSTRAINT alert_rules_severity,
            DROP COLUMN kind, DROP COLUMN spec, DROP COLUMN source
        """
    )
