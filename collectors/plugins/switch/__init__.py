"""Switch ports over SNMP v2c/v3: IF-MIB ifTable and ifXTable (64-bit counters, status, speed)."""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any, Literal

import msgspec

from unity.collectors.command import read_secret
from unity.sdk import Health, Metric, Plugin, Sink

EXTRA = "needs the 'switch' extra: pip install 'unity-telemetry[switch]'"

IF_TABLE = "1.3.6.1.2.1.2.2.1"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1.1"
# column name -> OID (IF-MIB, RFC 2863)
COLUMNS = {
    "descr": f"{IF_TABLE}.2",
    "speed": f"{IF_TABLE}.5",
    "admin": f"{IF_TABLE}.7",
    "oper": f"{IF_TABLE}.8",
    "in_octets": f"{IF_TABLE}.10",
    "in_discards": f"{IF_TABLE}.13",
    "in_errors": f"{IF_TABLE}.14",
    "out_octets": f"{IF_TABLE}.16",
    "out_discards": f"{IF_TABLE}.19",
    "out_errors": f"{IF_TABLE}.20",
    "name": f"{IF_X_TABLE}.1",
    "hc_in_octets": f"{IF_X_TABLE}.6",
    "hc_out_octets": f"{IF_X_TABLE}.10",
    "high_speed": f"{IF_X_TABLE}.15",
    "alias": f"{IF_X_TABLE}.18",
}
TEXT = frozenset({"descr", "name", "alias"})
OPER = {
    1: "up",
    2: "down",
    3: "testing",
    4: "unknown",
    5: "dormant",
    6: "notPresent",
    7: "lowerLayerDown",
}


class Device(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    host: str
    port: int = 161
    name: str = ""
    version: Literal["2c", "3"] = "2c"
    # v2c: the community is a password: from the environment or a file ("public" when neither).
    community_env: str = ""
    community_file: str = ""
    # v3 (USM): user, authentication and privacy; keys from the environment or files.
    user: str = ""
    auth_protocol: Literal["none", "md5", "sha", "sha256", "sha512"] = "sha"
    auth_key_env: str = ""
    auth_key_file: str = ""
    priv_protocol: Literal["none", "des", "aes", "aes256"] = "aes"
    priv_key_env: str = ""
    priv_key_file: str = ""

    def __post_init__(self) -> None:
        if self.version == "3" and not self.user:
            raise ValueError("SNMP v3 needs user")
        if self.auth_protocol == "none" and self.priv_protocol != "none":
            raise ValueError(
                "priv_protocol needs an auth_protocol (USM has no privacy without auth)"
            )

    @property
    def label(self) -> str:
        return self.name or self.host


class SwitchConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    devices: list[Device] = []
    request_timeout: float = 2.0
    retries: int = 1
    # Rows asked for per GETBULK request.
    max_repetitions: int = 25


class SwitchPlugin(Plugin):
    id = "switch"
    name = "Switch ports (SNMP)"
    description = "Per switch port over SNMP: status, speed, 64-bit traffic, errors, discards."
    category = "network"
    Config = SwitchConfig
    metrics = (
        Metric("switch_interface_up", "", "gauge", "1 when ifOperStatus is up"),
        Metric("switch_interface_oper_status", "", "gauge", "ifOperStatus (1 up, 2 down, 7 ...)"),
        Metric("switch_interface_admin_up", "", "gauge", "1 when ifAdminStatus is up"),
        Metric("switch_interface_speed_bps", "bps", "gauge", "ifHighSpeed (or ifSpeed) in bit/s"),
        Metric(
            "switch_interface_receive_bytes", "bytes", "counter", "ifHCInOctets (else ifInOctets)"
        ),
        Metric(
            "switch_interface_transmit_bytes",
            "bytes",
            "counter",
            "ifHCOutOctets (else ifOutOctets)",
        ),
        Metric("switch_interface_receive_errors_total", "", "counter", "ifInErrors"),
        Metric("switch_interface_transmit_errors_total", "", "counter", "ifOutErrors"),
        Metric("switch_interface_receive_discards_total", "", "counter", "ifInDiscards"),
        Metric("switch_interface_transmit_discards_total", "", "counter", "ifOutDiscards"),
    )

    config: SwitchConfig

    def __init__(self, config: msgspec.Struct | None = None, *, instance: str = "") -> None:
        super().__init__(config, instance=instance)
        self._errors: list[str] = []

    def unavailable(self) -> str | None:
        if importlib.util.find_spec("pysnmp") is None:
            return EXTRA
        return None if self.config.devices else "no devices configured"

    def collect(self, sink: Sink) -> None:
        if importlib.util.find_spec("pysnmp") is None:
            raise RuntimeError(EXTRA)
        # collect() runs in a worker thread: this event loop is the thread's own.
        results = asyncio.run(self.gather())
        self._errors = []
        inventory = []
        for device, result in zip(self.config.devices, results, strict=True):
            if isinstance(result, BaseException):
                self._errors.append(f"{device.label}: {type(result).__name__}: {result}")
                continue
            inventory.extend(emit(sink, device.label, result))
        if self._errors and len(self._errors) == len(self.config.devices):
            raise RuntimeError("; ".join(self._errors))
        sink.event("interfaces", f"{len(inventory)} interface(s)", {"interfaces": inventory})

    def health(self) -> Health | None:
        return Health("degraded", "; ".join(self._errors)) if self._errors else None

    async def gather(self) -> list[dict[int, dict[str, Any]] | BaseException]:
        return await asyncio.gather(
            *(self.walk(d) for d in self.config.devices), return_exceptions=True
        )

    async def walk(self, device: Device) -> dict[int, dict[str, Any]]:
        """Every IF-MIB column this plugin reads, as rows by ifIndex."""
        from pysnmp.hlapi.v3arch.asyncio import (  # type: ignore[import-untyped]
            ContextData,
            ObjectIdentity,
            ObjectType,
            SnmpEngine,
            UdpTransportTarget,
            bulk_walk_cmd,
        )

        engine = SnmpEngine()
        auth = credentials(device)
        target = await UdpTransportTarget.create(
            (device.host, device.port),
            timeout=self.config.request_timeout,
            retries=self.config.retries,
        )
        rows: dict[int, dict[str, Any]] = {}
        try:
            for column, oid in COLUMNS.items():
                async for error, status, _, binds in bulk_walk_cmd(
                    engine,
                    auth,
                    target,
                    ContextData(),
                    0,
                    self.config.max_repetitions,
                    ObjectType(ObjectIdentity(oid)),
                    lexicographicMode=False,
                    lookupMib=False,
                ):
                    if error:
                        raise OSError(f"{error}")
                    if status:
                        raise OSError(f"{status.prettyPrint()} walking {oid}")
                    for bind in binds:
                        name, value = bind[0], bind[1]
                        index = int(tuple(name)[-1])
                        text = value.prettyPrint() if column in TEXT else None
                        rows.setdefault(index, {})[column] = (
                            text if text is not None else int(value)
                        )
        finally:
            engine.close_dispatcher()
            await asyncio.sleep(0)  # the socket closes on the loop's next turn
        if not rows:
            raise OSError("no IF-MIB rows (is the agent's view limited?)")
        return rows


def credentials(device: Device) -> Any:
    from pysnmp.hlapi.v3arch.asyncio import (
        USM_AUTH_HMAC96_MD5,
        USM_AUTH_HMAC96_SHA,
        USM_AUTH_HMAC192_SHA256,
        USM_AUTH_HMAC384_SHA512,
        USM_AUTH_NONE,
        USM_PRIV_CBC56_DES,
        USM_PRIV_CFB128_AES,
        USM_PRIV_CFB256_AES,
        USM_PRIV_NONE,
        CommunityData,
        UsmUserData,
    )

    if device.version == "2c":
        community = read_secret(device.community_env, device.community_file) or "public"
        # v2c when the device is set to it (v3 is supported and the README says prefer it).
        return CommunityData(community, mpModel=1)  # noqa: S508
    auth = {
        "none": USM_AUTH_NONE,
        "md5": USM_AUTH_HMAC96_MD5,
        "sha": USM_AUTH_HMAC96_SHA,
        "sha256": USM_AUTH_HMAC192_SHA256,
        "sha512": USM_AUTH_HMAC384_SHA512,
    }
    priv = {
        "none": USM_PRIV_NONE,
        "des": USM_PRIV_CBC56_DES,
        "aes": USM_PRIV_CFB128_AES,
        "aes256": USM_PRIV_CFB256_AES,
    }
    auth_key = read_secret(device.auth_key_env, device.auth_key_file)
    priv_key = read_secret(device.priv_key_env, device.priv_key_file)
    return UsmUserData(
        device.user,
        authKey=auth_key if device.auth_protocol != "none" else None,
        privKey=priv_key if device.priv_protocol != "none" else None,
        authProtocol=auth[device.auth_protocol],
        privProtocol=priv[device.priv_protocol],
    )


def emit(sink: Sink, device: str, rows: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    inventory = []
    for index, row in sorted(rows.items()):
        interface = str(row.get("name") or row.get("descr") or index)
        labels = {"device": device, "interface": interface, "index": str(index)}
        oper = row.get("oper")
        if oper is not None:
            sink.add("switch_interface_up", 1.0 if oper == 1 else 0.0, labels)
            sink.add("switch_interface_oper_status", oper, labels)
        if row.get("admin") is not None:
            sink.add("switch_interface_admin_up", 1.0 if row["admin"] == 1 else 0.0, labels)
        # ifSpeed saturates at 4294967295 (Gauge32); ifHighSpeed counts Mbit/s.
        speed = row["high_speed"] * 1e6 if row.get("high_speed") else row.get("speed")
        if speed is not None:
            sink.add("switch_interface_speed_bps", speed, labels)
        # The 32-bit octet counters wrap in 34 s at 1 Gbit/s: the 64-bit ones come first.
        for metric, wide, narrow in (
            ("switch_interface_receive_bytes", "hc_in_octets", "in_octets"),
            ("switch_interface_transmit_bytes", "hc_out_octets", "out_octets"),
        ):
            value = row.get(wide, row.get(narrow))
            if value is not None:
                sink.add(metric, value, labels)
        for metric, column in (
            ("switch_interface_receive_errors_total", "in_errors"),
            ("switch_interface_transmit_errors_total", "out_errors"),
            ("switch_interface_receive_discards_total", "in_discards"),
            ("switch_interface_transmit_discards_total", "out_discards"),
        ):
            if row.get(column) is not None:
                sink.add(metric, row[column], labels)
        inventory.append(
            {
                "device": device,
                "index": index,
                "name": row.get("name", ""),
                "description": row.get("descr", ""),
                "alias": row.get("alias", ""),
                "speed_bps": speed,
                "oper_status": OPER.get(oper or 0, str(oper)),
                "counters": "64-bit" if "hc_in_octets" in row else "32-bit",
            }
        )
    return inventory
