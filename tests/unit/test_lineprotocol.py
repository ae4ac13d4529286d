"""Influx line protocol as Telegraf's influx serializer prints it (cpu, mem, disk, net, system)."""

from __future__ import annotations

from pathlib import Path

import pytest

from unity.ingest.lineprotocol import PLUGIN, LineProtocolError, parse_line, to_batches
from unity.schemas import MetricBatch, Sample, split_batch

TS = 1732363200000000000  # 2024-11-23T12:00:00Z in ns, as Telegraf stamps it

# One flush of Telegraf 1.32 with inputs cpu, mem, disk, net, system and smart, serialized with
# `data_format = "influx"` and `influx_uint_support = true`: tags sorted, ints with i, uints with u,
# spaces in tag values escaped, one string field.
TELEGRAF = (Path(__file__).parent / "testdata" / "lineprotocol" / "telegraf-1.32.lp").read_text()


def _by_name(batch: MetricBatch) -> dict[tuple[str, tuple[tuple[str, str], ...]], Sample]:
    return {(s.name, tuple(sorted(s.labels.items()))): s for s in batch.samples}


def test_telegraf_flush_maps_to_one_batch_of_the_tagged_host() -> None:
    parsed = to_batches(TELEGRAF.encode(), "subjecthost")
    assert parsed.errors == []
    assert [b.host for b in parsed.batches] == ["web01"]
    batch = parsed.batches[0]
    assert batch.plugin == PLUGIN
    samples = _by_name(batch)
    idle = samples[("cpu_usage_idle", (("cpu", "cpu0"),))]
    assert idle.value == pytest.approx(97.39478957915831)
    assert idle.ts == pytest.approx(1732363200.0)
    assert samples[("cpu_usage_user", (("cpu", "cpu-total"),))].value == 2.1
    assert samples[("mem_total", ())].value == 16787886080.0
    assert samples[("net_bytes_recv", (("interface", "eth0"),))].value == 184465338812.0
    assert samples[("system_uptime", ())].value == 864000.0
    # 10 cpu fields x 2, 9 mem, 7 + 4 disk, 9 net, 6 + 1 system, 3 smart; the string is skipped.
    assert len(batch.samples) == 20 + 9 + 11 + 9 + 7 + 3
    assert parsed.strings_skipped == 1
    # Every produced sample passes the wire validation.
    good, bad = split_batch(batch, 1732363200.0, now=1732363200.0)
    assert bad == []
    assert len(good) == len(batch.samples)


def test_escaped_spaces_in_tags_and_booleans() -> None:
    batch = to_batches(TELEGRAF.encode(), "x").batches[0]
    samples = _by_name(batch)
    backup = next(
        s
        for (name, _), s in samples.items()
        if name == "disk_used_percent" and s.labels["device"] == "sdb1"
    )
    assert backup.labels["path"] == "/mnt/backup disk"
    assert backup.labels["label"] == "Backup Disk"
    assert "host" not in backup.labels
    smart = next(s for (name, _), s in samples.items() if name == "smart_device_health_ok")
    assert smart.value == 1.0
    assert smart.labels["model"] == "Samsung SSD 860 EVO 500GB"


def test_escapes_in_measurement_field_keys_and_strings() -> None:
    point = parse_line(
        'my\\,meas\\ ure,ta\\=g=v\\,1 f\\=x=1.5,msg="say \\"hi\\", a=b c",ok=F,n=-3i'
        " 1700000000000000001"
    )
    assert point.measurement == "my,meas ure"
    assert point.tags == {"ta=g": "v,1"}
    assert point.fields == {"f=x": 1.5, "msg": 'say "hi", a=b c', "ok": False, "n": -3}
    assert point.ts_ns == 1700000000000000001


def test_line_without_timestamp_or_host_tag_uses_subject_host() -> None:
    parsed = to_batches(b"# a comment\n\nups,ups=apc load_percent=41,online=t\n", "nas")
    batch = parsed.batches[0]
    assert batch.host == "nas"
    assert {(s.name, s.value, s.ts) for s in batch.samples} == {
        ("ups_load_percent", 41.0, None),
        ("ups_online", 1.0, None),
    }


@pytest.mark.parametrize(
    "line",
    [
        "cpu",
        "cpu usage=",
        "cpu usage=abc",
        "cpu,host usage=1",
        'cpu msg="unterminated',
        "cpu usage=1 notatime",
        "cpu n=-1u",
        "cpu n=1.5i",
        ",host=a usage=1",
    ],
)
def test_bad_lines_are_errors(line: str) -> None:
    with pytest.raises(LineProtocolError):
        parse_line(line)


def test_bad_lines_are_reported_by_number_and_good_lines_kept() -> None:
    data = f"cpu usage_idle=99 {TS}\ncpu usage_idle=\nmem used=1i {TS}\n".encode()
    parsed = to_batches(data, "h")
    assert len(parsed.errors) == 1 and parsed.errors[0].startswith("line 2:")
    assert {s.name for s in parsed.batches[0].samples} == {"cpu_usage_idle", "mem_used"}


def test_not_utf8_is_an_error() -> None:
    parsed = to_batches(b"cpu usage=1 \xff\xfe", "h")
    assert parsed.batches == [] and parsed.errors[0].startswith("not UTF-8")
