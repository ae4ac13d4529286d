"""OpenVPN server status files, versions 1, 2 and 3 (`--status-version`)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


class StatusError(ValueError):
    """Not an OpenVPN server status file; the message says what was found."""


@dataclass
class Client:
    common_name: str
    real_address: str
    received: int
    sent: int
    connected_since: float | None  # Unix time
    virtual_addresses: list[str] = field(default_factory=list)
    username: str = ""
    cipher: str = ""


@dataclass
class Status:
    version: int
    updated: float | None
    clients: list[Client]
    stats: dict[str, float]


def local_time(text: str) -> float | None:
    """A time OpenVPN printed without a zone: the server's local time (its host is ours)."""
    for layout in ("%a %b %d %H:%M:%S %Y", "%Y-%m-%d %H:%M:%S"):
        try:
            return dt.datetime.strptime(text.strip(), layout).astimezone().timestamp()
        except ValueError:
            continue
    return None


def parse(text: str) -> Status:
    first = text.lstrip().split("\n", 1)[0].strip()
    if first == "OpenVPN CLIENT LIST":
        return _v1(text)
    if first.startswith("TITLE"):
        sep = "\t" if first.startswith("TITLE\t") else ","
        return _v23(text, sep)
    if first == "OpenVPN STATISTICS":
        raise StatusError("a client's status file (OpenVPN STATISTICS), not a server's")
    raise StatusError(f"not an OpenVPN status file: first line {first[:60]!r}")


def _v1(text: str) -> Status:
    status = Status(1, None, [], {})
    section = "clients"
    by_address: dict[str, Client] = {}
    for line in text.splitlines():
        cells = line.split(",")
        head = cells[0]
        if head in ("OpenVPN CLIENT LIST", "Common Name", "Virtual Address") or head == "END":
            continue
        if head == "Updated":
            status.updated = local_time(",".join(cells[1:]))
        elif head == "ROUTING TABLE":
            section = "routes"
        elif head == "GLOBAL STATS":
            section = "stats"
        elif section == "clients" and len(cells) >= 5:
            client = Client(cells[0], cells[1], int(cells[2]), int(cells[3]), local_time(cells[4]))
            status.clients.append(client)
            by_address[client.real_address] = client
        elif section == "routes" and len(cells) >= 3 and cells[2] in by_address:
            by_address[cells[2]].virtual_addresses.append(cells[0])
        elif section == "stats" and len(cells) == 2:
            status.stats[cells[0]] = float(cells[1])
    return status


def _v23(text: str, sep: str) -> Status:
    status = Status(2 if sep == "," else 3, None, [], {})
    headers: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = line.split(sep)
        kind = cells[0]
        if kind == "HEADER":
            headers[cells[1]] = cells[2:]
        elif kind == "TIME" and len(cells) >= 3:
            status.updated = float(cells[2])
        elif kind == "CLIENT_LIST":
            row = dict(zip(headers.get(kind, []), cells[1:], strict=False))
            since = row.get("Connected Since (time_t)")
            client = Client(
                row["Common Name"],
                row["Real Address"],
                int(row["Bytes Received"]),
                int(row["Bytes Sent"]),
                float(since) if since else local_time(row.get("Connected Since", "")),
                [a for a in (row.get("Virtual Address"), row.get("Virtual IPv6 Address")) if a],
                "" if row.get("Username") == "UNDEF" else row.get("Username", ""),
                row.get("Data Channel Cipher", ""),
            )
            status.clients.append(client)
        elif kind == "GLOBAL_STATS" and len(cells) == 3:
            status.stats[cells[1]] = float(cells[2])
    if not headers:
        raise StatusError("status file has no HEADER lines")
    return status
