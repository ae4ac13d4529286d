"""Bearer tokens: 401 without a valid token, 403 without the scope; reads open only by config."""

from __future__ import annotations

import logging
import os

import pytest

from tests.api.conftest import Api, running_api
from tests.servers import Env
from unity.api.tokens import create_token, digest, ensure_admin_token, revoke_token
from unity.compose.cli import main


async def test_reads_need_a_token_by_default(api: Api) -> None:
    resp = await api.get("/plugins", scope=None)
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert resp.headers["www-authenticate"].startswith("Bearer")
    assert (await api.get("/plugins", scope="read")).status_code == 200


@pytest.mark.parametrize(
    "header",
    ["Bearer uty_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer ", "uty_no-scheme"],
)
async def test_bad_credentials_are_401(api: Api, header: str) -> None:
    resp = await api.client.get("/api/v1/latest", headers={"Authorization": header})
    assert resp.status_code == 401, resp.text


async def test_scopes_are_enforced_and_ranked(api: Api) -> None:
    body = {"host": "h1", "plugin": "custom"}
    forbidden = await api.send("POST", "/plugins", scope="read", json=body)
    assert forbidden.status_code == 403
    assert "'write'" in forbidden.json()["error"]["message"]
    created = await api.send("POST", "/plugins", scope="write", json=body)
    assert created.status_code == 201, created.text
    plugin_id = created.json()["id"]
    # Deleting needs admin; admin also covers read and write.
    assert (await api.send("DELETE", f"/plugins/{plugin_id}", scope="write")).status_code == 403
    assert (await api.get(f"/plugins/{plugin_id}", scope="admin")).status_code == 200
    assert (await api.send("DELETE", f"/plugins/{plugin_id}", scope="admin")).status_code == 204


async def test_revoked_and_expired_tokens_are_refused(api: Api) -> None:
    pool = api.state.pool
    _, revoked = await create_token(pool, "soon-revoked", ["read"])
    await revoke_token(pool, "soon-revoked")
    resp = await api.client.get("/api/v1/hosts", headers={"Authorization": f"Bearer {revoked}"})
    assert resp.status_code == 401
    _, old = await create_token(pool, "expired", ["read"])
    await pool.execute(
        "UPDATE api_tokens SET expires_at = now() - interval '1 s' WHERE name = 'expired'"
    )
    resp = await api.client.get("/api/v1/hosts", headers={"Authorization": f"Bearer {old}"})
    assert resp.status_code == 401


async def test_tokens_are_stored_as_hashes_and_use_is_recorded(api: Api) -> None:
    secret = api.tokens["read"]
    pool = api.state.pool
    row = await pool.fetchrow(
        "SELECT prefix, last_used_at FROM api_tokens WHERE token_hash = $1", digest(secret)
    )
    assert row["last_used_at"] is None and secret.startswith(row["prefix"])
    stored = await pool.fetch("SELECT t::text AS t FROM api_tokens t")
    assert not any(secret in r["t"] for r in stored)
    await api.get("/hosts")
    used = await pool.fetchval(
        "SELECT last_used_at FROM api_tokens WHERE token_hash = $1", digest(secret)
    )
    assert used is not None


async def test_open_reads_still_guard_writes(env: Env) -> None:
    async with running_api(env, api_open_reads=True) as api:
        assert (await api.get("/plugins", scope=None)).status_code == 200
        resp = await api.send("POST", "/plugins", scope=None, json={"host": "h", "plugin": "p"})
        assert resp.status_code == 401


async def test_ensure_admin_token_creates_one_once(env: Env) -> None:
    async with running_api(env) as api:
        # The fixture made an admin token: nothing to do.
        assert await ensure_admin_token(env.ep) is None
        name = await api.state.pool.fetchval(
            "SELECT name FROM api_tokens WHERE token_hash = $1", digest(api.tokens["admin"])
        )
        await revoke_token(api.state.pool, name)
        secret = await ensure_admin_token(env.ep)
        assert secret is not None and secret.startswith("uty_")
        assert await ensure_admin_token(env.ep) is None
        resp = await api.client.delete(
            "/api/v1/plugins/999", headers={"Authorization": f"Bearer {secret}"}
        )
        assert resp.status_code == 404  # authorised as admin, then not found


def _cli_env(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("UNITY_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("UNITY_NATS_URL", env.ep.nats_url)
    monkeypatch.setenv("UNITY_VALKEY_URL", env.ep.valkey_url)
    monkeypatch.setenv("UNITY_DATABASE_URL", env.ep.database_url)
    monkeypatch.setenv("UNITY_DATABASE_PASSWORD", env.ep.database_password or "")


def test_token_cli_prints_the_secret_once_and_never_logs_it(
    env: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    _cli_env(env, monkeypatch)
    caplog.set_level(logging.DEBUG)
    assert main(["token", "create", "grafana", "--scope", "read", "--scope", "write"]) == 0
    out = capsys.readouterr().out
    secret = out.strip().splitlines()[-1]
    assert secret.startswith("uty_") and len(secret) > 40
    assert secret not in caplog.text
    assert main(["token", "list"]) == 0
    listing = capsys.readouterr().out
    assert "grafana" in listing and "read,write" in listing and secret not in listing
    assert main(["token", "create", "grafana"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert main(["token", "revoke", "grafana"]) == 0
    assert main(["token", "list"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["token", "revoke", "nobody"]) == 1
