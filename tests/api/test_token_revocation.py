"""A revoked token stops working at once, even when cached, and its name can be used again."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from tests.api.conftest import Api
from tests.helpers import wait_for
from unity.api.auth import CHANNEL
from unity.api.tokens import TokenError, create_token, list_tokens, revoke_token


async def _connect(api: Api) -> asyncpg.Connection:
    ep = api.env.ep
    return await asyncpg.connect(ep.database_url, password=ep.database_password)


async def _status(api: Api, secret: str) -> int:
    resp = await api.client.get("/api/v1/hosts", headers={"Authorization": f"Bearer {secret}"})
    return resp.status_code


async def _first_refusal(api: Api, secret: str, tries: int = 20) -> int | None:
    """The try at which the API first refuses ``secret``, letting the loop run between tries.

    Counted in loop turns, not seconds: the old 5 s cache would answer 200 on all of them.
    """
    for attempt in range(tries):
        if await _status(api, secret) == 401:
            return attempt
        await asyncio.sleep(0)
    return None


async def test_a_cached_token_revoked_elsewhere_is_refused_at_once(api: Api) -> None:
    _, secret = await create_token(api.state.pool, "cached-reader", ["read"])
    assert await _status(api, secret) == 200  # now in the API's cache
    assert await _status(api, secret) == 200

    # Revoke from another connection, as `unity token revoke` does, and wait for the change
    # notice to reach a listener of our own (the API's is on the same loop).
    cli = await _connect(api)
    noticed = asyncio.Event()
    await cli.add_listener(CHANNEL, lambda *_: noticed.set())
    try:
        await revoke_token(cli, "cached-reader")
        await asyncio.wait_for(noticed.wait(), 20)
    finally:
        await cli.close()

    assert await _first_refusal(api, secret) is not None


async def test_a_revoked_name_can_be_given_to_a_new_token(api: Api) -> None:
    pool = api.state.pool
    _, old = await create_token(pool, "reader", ["read"])
    with pytest.raises(TokenError, match="active token named 'reader' already exists"):
        await create_token(pool, "reader", ["read"])
    await revoke_token(pool, "reader")
    info, new = await create_token(pool, "reader", ["read", "write"])
    assert info.scopes == ["read", "write"]
    assert await _status(api, new) == 200
    assert await _first_refusal(api, old) == 0
    rows = [(t.name, t.revoked_at is None) for t in await list_tokens(pool) if t.name == "reader"]
    assert rows == [("reader", False), ("reader", True)] or rows == [
        ("reader", True),
        ("reader", False),
    ]
    # Revoking again revokes the new one; a third time is a no-op, not an error.
    assert (await revoke_token(pool, "reader")).revoked_at is not None
    assert (await revoke_token(pool, "reader")).revoked_at is not None
    assert await _first_refusal(api, new) is not None


async def test_without_the_change_channel_every_lookup_reads_the_database(api: Api) -> None:
    auth = api.state.auth
    _, secret = await create_token(api.state.pool, "uncached", ["read"])
    assert await _status(api, secret) == 200
    listener = auth._listener
    assert listener is not None
    killer = await _connect(api)
    try:
        await killer.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
        await wait_for(lambda: auth._listener is None)
        # Revoked with no notice sent to anyone listening: refused on the very next request.
        await revoke_token(killer, "uncached")
    finally:
        await killer.close()
    assert await _status(api, secret) == 401
