"""Plugin registry, API tokens, alert rules and alert states.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per plugin instance on a host: two UPSes are two rows.
    op.execute(
        """
        CREATE TABLE plugins (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            host            text NOT NULL,
            plugin          text NOT NULL,
            instance        text NOT NULL DEFAULT '',
            name            text NOT NULL DEFAULT '',
            version         text NOT NULL DEFAULT '',
            description     text NOT NULL DEFAULT '',
            author          text NOT NULL DEFAULT '',
            category        text NOT NULL DEFAULT '',
            tags            text[] NOT NULL DEFAULT '{}',
            source          text NOT NULL DEFAULT 'discovered'
                            CHECK (source IN ('builtin', 'registered', 'discovered')),
            external        boolean NOT NULL DEFAULT false,
            enabled         boolean NOT NULL DEFAULT true,
            interval_s      double precision,
            config          jsonb NOT NULL DEFAULT '{}',
            config_schema   jsonb NOT NULL DEFAULT '{}',
            config_revision integer NOT NULL DEFAULT 0,
            metrics         jsonb NOT NULL DEFAULT '[]',
            health          text CHECK (health IN ('ok', 'degraded', 'error')),
            health_message  text NOT NULL DEFAULT '',
            health_at       timestamptz,
            last_seen       timestamptz,
            created_at      timestamptz NOT NULL DEFAULT now(),
            updated_at      timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT plugins_identity UNIQUE (host, plugin, instance)
        )
        """
    )
    op.execute("CREATE INDEX plugins_category ON plugins (category)")
    # Tokens are 256-bit random strings: a SHA-256 digest is a sufficient hash for them.
    op.execute(
        """
        CREATE TABLE api_tokens (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name          text NOT NULL UNIQUE,
            prefix        text NOT NULL,
            token_hash    bytea NOT NULL UNIQUE,
            scopes        text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']),
            created_at    timestamptz NOT NULL DEFAULT now(),
            expires_at    timestamptz,
            last_used_at  timestamptz,
            revoked_at    timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alert_rules (
            id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name        text NOT NULL UNIQUE,
            selector    text NOT NULL,
            condition   jsonb NOT NULL,
            for_s       double precision NOT NULL DEFAULT 0,
            severity    text NOT NULL DEFAULT 'warning',
            enabled     boolean NOT NULL DEFAULT true,
            created_at  timestamptz NOT NULL DEFAULT now(),
            updated_at  timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE alerts (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            rule_id      bigint NOT NULL REFERENCES alert_rules (id) ON DELETE CASCADE,
            series_id    bigint,
            state        text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
            value        double precision,
            started_at   timestamptz NOT NULL,
            resolved_at  timestamptz,
            labels       jsonb NOT NULL DEFAULT '{}'
        )
        """
    )
    op.execute("CREATE INDEX alerts_rule_state ON alerts (rule_id, state)")


def downgrade() -> None:
    for table in ("alerts", "alert_rules", "api_tokens", "plugins"):
        op.execute(f"DROP TABLE IF EXISTS {table}")
