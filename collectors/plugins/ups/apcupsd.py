"""apcupsd's network information server (NIS, TCP 3551), read as NUT-named variables.

The protocol (apcupsd's src/lib/apclibnis.c): each message is a 2-byte big-endian length and
that many bytes; the client sends ``status``, the server answers one ``KEY : value`` line per
message and ends with a zero-length message. `apcaccess status` prints the same lines.
"""

from __future__ import annotations

import re
import socket
import struct

# apcupsd STATUS words -> ups.status flags (NUT's names).
FLAGS = {
    "ONLINE": "OL",
    "ONBATT": "OB",
    "LOWBATT": "LB",
    "CAL": "CAL",
    "TRIM": "TRIM",
    "BOOST": "BOOST",
    "OVERLOAD": "OVER",
    "REPLACEBATT": "RB",
    "SHUTTING DOWN": "FSD",
}
# apcupsd field -> (NUT variable, factor to NUT's unit).
FIELDS = {
    "BCHARGE": ("battery.charge", 1.0),
    "TIMELEFT": ("battery.runtime", 60.0),  # minutes -> seconds
    "BATTV": ("battery.voltage", 1.0),
    "LOADPCT": ("ups.load", 1.0),
    "LINEV": ("input.voltage", 1.0),
    "OUTPUTV": ("output.voltage", 1.0),
    "LINEFREQ": ("input.frequency", 1.0),
    "ITEMP": ("ups.temperature", 1.0),
    "NOMPOWER": ("ups.realpower.nominal", 1.0),
}
NAMES = {"MODEL": "device.model", "SERIALNO": "device.serial", "DRIVER": "driver.name"}
_LEADING = re.compile(r"^\s*(-?[\d.]+)")
_MAX_MESSAGE = 65535


class NisError(RuntimeError):
    """apcupsd could not be reached or broke its protocol."""


def parse_status(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def variables(fields: dict[str, str]) -> dict[str, str] | str:
    """The NUT-named variables, or why there are none (apcupsd lost its UPS: COMMLOST)."""
    status = fields.get("STATUS", "")
    if "COMMLOST" in status.split():
        return "apcupsd lost contact with the UPS (COMMLOST)"
    out = {
        "ups.status": " ".join(flag for word, flag in FLAGS.items() if word in status),
        **{NAMES[k]: v for k, v in fields.items() if k in NAMES},
    }
    for key, (var, factor) in FIELDS.items():
        match = _LEADING.match(fields.get(key, ""))
        if match:
            out[var] = f"{float(match.group(1)) * factor:g}"
    return out


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise NisError("apcupsd closed the connection mid-answer")
        data += chunk
    return data


def status(host: str, port: int, timeout: float) -> str:
    """`apcaccess status` over the network: the lines apcupsd answers."""
    where = f"apcupsd {host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">H", 6) + b"status")
            lines = []
            while size := struct.unpack(">H", _read_exact(sock, 2))[0]:
                if size > _MAX_MESSAGE:
                    raise NisError(f"{where}: message of {size} bytes")
                lines.append(_read_exact(sock, size).decode(errors="replace").rstrip("\n"))
    except OSError as exc:
        raise NisError(f"{where}: {exc.strerror or exc}") from None
    except NisError as exc:
        raise NisError(f"{where}: {exc}") from None
    return "\n".join(lines)
