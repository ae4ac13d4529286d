"""Sign-in exchanges a token for a session cookie; the cookie stands for the token (scopes,
revocation), writes through it need the CSRF header, sign-out ends it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from http.cookies import SimpleCookie

import pytest

from tests.api.conftest import Api, running_api
from tests.servers import Env
from unity.api.tokens import revoke_token
from unity.api.web.session import COOKIE, CSRF_HEADER


@pytest.fixture
async def api(env: Env) -> AsyncIterator[Api]:
    async with running_api(env) as running:
        yield running


def _cookie(secret: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={secret}"}


async def _sign_in(api: Api, scope: str) -> tuple[str, dict[str, object]]:
    resp = await api.client.post("/api/v1/session", json={"token": api.tokens[scope]})
    assert resp.status_code == 200, resp.text
    cookie = SimpleCookie(resp.headers["set-cookie"])[COOKIE]
    api.client.cookies.clear()
    return cookie.value, resp.json()


async def test_sign_in_sets_a_strict_http_only_cookie_and_never_echoes_the_token(api: Api) -> None:
    resp = await api.client.post("/api/v1/session", json={"token": api.tokens["read"]})
    assert resp.status_code == 200, resp.text
    header = resp.headers["set-cookie"]
    cookie = SimpleCookie(header)[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "strict"
    assert cookie["path"] == "/"
    assert 0 < int(cookie["max-age"]) <= 12 * 3600
    assert not cookie["secure"]  # plain http here; over TLS the cookie is Secure (next test)
    body = resp.json()
    assert body["name"].startswith("test-read-") and body["scopes"] == ["read"]
    assert api.tokens["read"] not in resp.text and api.tokens["read"] not in header
    stored = await api.state.pool.fetchval("SELECT count(*) FROM web_sessions")
    assert stored == 1
    # The database keeps a digest of the cookie's secret, not the secret.
    raw = await api.state.pool.fetchval("SELECT id_hash FROM web_sessions")
    assert cookie.value.encode() not in raw


async def test_cookie_is_secure_over_tls(api: Api) -> None:
    resp = await api.client.post("https://unity/api/v1/session", json={"token": api.tokens["read"]})
    assert resp.status_code == 200
    assert SimpleCookie(resp.headers["set-cookie"])[COOKIE]["secure"] is True


async def test_wrong_token_is_refused_without_a_cookie(api: Api) -> None:
    resp = await api.client.post("/api/v1/session", json={"token": "uty_not-a-token"})
    assert resp.status_code == 401
    assert resp.json()["error"]["code"] == "unauthorized"
    assert "set-cookie" not in resp.headers
    assert (await api.client.get("/api/v1/session")).status_code == 401


async def test_cookie_reads_and_its_token_scope_limits_writes(api: Api) -> None:
    secret, info = await _sign_in(api, "read")
    cookies = _cookie(secret)
    assert (await api.client.get("/api/v1/hosts", headers=cookies)).status_code == 200
    me = await api.client.get("/api/v1/session", headers=cookies)
    assert me.status_code == 200 and me.json()["csrf"] == info["csrf"]
    # A read token's session may not write, even with the CSRF header.
    denied = await api.client.post(
        "/api/v1/plugins/1/disable", headers=cookies | {CSRF_HEADER: str(info["csrf"])}
    )
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "forbidden"


async def test_cookie_writes_need_the_csrf_header(api: Api) -> None:
    secret, info = await _sign_in(api, "write")
    cookies = _cookie(secret)
    body = {"host": "h1", "plugin": "custom", "config_schema": {"type": "object"}}
    missing = await api.client.post("/api/v1/plugins", headers=cookies, json=body)
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "csrf_failed"
    wrong = await api.client.post(
        "/api/v1/plugins", json=body, headers=cookies | {CSRF_HEADER: "guess"}
    )
    assert wrong.status_code == 403
    assert (await api.state.pool.fetchval("SELECT count(*) FROM plugins")) == 0
    ok = await api.client.post(
        "/api/v1/plugins", json=body, headers=cookies | {CSRF_HEADER: str(info["csrf"])}
    )
    assert ok.status_code in (200, 201), ok.text
    # A bearer token needs no CSRF header: no browser sends it by itself.
    bearer = await api.send("POST", "/plugins", "write", json=body | {"plugin": "other"})
    assert bearer.status_code in (200, 201), bearer.text


async def test_sign_out_ends_the_session_for_good(api: Api) -> None:
    secret, info = await _sign_in(api, "read")
    cookies = _cookie(secret)
    # Sign-out is a write too: without the CSRF header another site could sign one out.
    refused = await api.client.delete("/api/v1/session", headers=cookies)
    assert refused.status_code == 403
    out = await api.client.delete(
        "/api/v1/session", headers=cookies | {CSRF_HEADER: str(info["csrf"])}
    )
    assert out.status_code == 204
    cleared = SimpleCookie(out.headers["set-cookie"])[COOKIE]
    assert cleared.value == "" and int(cleared["max-age"]) == 0
    # The old cookie, replayed, no longer works: the session is gone from the database.
    assert (await api.client.get("/api/v1/hosts", headers=cookies)).status_code == 401
    assert (await api.state.pool.fetchval("SELECT count(*) FROM web_sessions")) == 0


async def test_session_ends_with_its_token_and_at_expiry(api: Api) -> None:
    secret, _ = await _sign_in(api, "read")
    expiring, _ = await _sign_in(api, "admin")
    await api.state.pool.execute(
        "UPDATE web_sessions SET expires_at = now() - interval '1 second'"
        " WHERE token_id = (SELECT id FROM api_tokens WHERE name LIKE 'test-admin-%')"
    )
    expired = await api.client.get("/api/v1/hosts", headers=_cookie(expiring))
    assert expired.status_code == 401
    assert "sign in again" in expired.json()["error"]["message"]
    assert (await api.client.get("/api/v1/hosts", headers=_cookie(secret))).status_code == 200
    name = await api.state.pool.fetchval(
        "SELECT name FROM api_tokens WHERE name LIKE 'test-read-%'"
    )
    await revoke_token(api.state.pool, name)
    assert (await api.client.get("/api/v1/session", headers=_cookie(secret))).status_code == 401
