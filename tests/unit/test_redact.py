from __future__ import annotations

import pytest

from unity.sdk.settings import redact


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # A user name alone is no secret.
        ("postgresql://unity@db:5432/unity", "postgresql://unity@db:5432/unity"),
        ("valkey://reader@cache:6379/0", "valkey://reader@cache:6379/0"),
        ("nats://host:4222", "nats://host:4222"),
        # Passwords go, the user name stays.
        ("postgresql://u:hunter2@db:5432/unity", "postgresql://u:***@db:5432/unity"),
        ("valkey://:s3cret@cache:6379/0", "valkey://:***@cache:6379/0"),
        ("postgresql://u:p%40ss@[::1]:5432/unity", "postgresql://u:***@[::1]:5432/unity"),
        # NATS reads a lone user part as a token.
        ("nats://t0ken@host:4222", "nats://***@host:4222"),
        ("tls://t0ken@host:4222", "tls://***@host:4222"),
        # libpq and asyncpg take a password as a query parameter too.
        (
            "postgresql://u@db/unity?sslmode=require&password=hunter2",
            "postgresql://u@db/unity?sslmode=require&password=***",
        ),
    ],
)
def test_redact_hides_secrets_and_only_secrets(url: str, shown: str) -> None:
    assert redact(url) == shown
