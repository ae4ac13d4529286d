"""The cache keeps its own record (schemas.storage.CachedValue); the API decodes those records
into its own body (schemas.api.LatestValue): the two JSON layouts must stay one."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from unity.schemas.api import LatestValue
from unity.schemas.storage import CachedValue


def test_a_cached_record_decodes_into_the_api_body_field_for_field() -> None:
    cached = CachedValue(
        "nas", "disk", "root", "disk_used_bytes", {"mount": "/"}, "bytes", "gauge", 1.5e9,
        datetime(2026, 12, 4, 12, 0, 0, 123000, tzinfo=UTC),
    )  # fmt: skip
    body = msgspec.json.decode(msgspec.json.encode(cached), type=LatestValue)
    assert msgspec.structs.asdict(body) == msgspec.structs.asdict(cached)
    assert set(LatestValue.__struct_fields__) == set(CachedValue.__struct_fields__)
    assert not issubclass(CachedValue, LatestValue) and not issubclass(LatestValue, CachedValue)
