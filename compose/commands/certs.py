from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unity.sdk.settings import Settings

NAME = "certs"
HELP = "a CA and TLS certificates for a deployment (servers, and clients for mutual TLS)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="where the files go (default: <data dir>/certs)")
    sub = parser.add_subparsers(dest="action", required=True)
    init = sub.add_parser("init", help="make the CA and the server certificate")
    init.add_argument(
        "--name",
        action="append",
        default=[],
        help="a host name or IP address the servers are reached by (repeat); "
        "localhost, 127.0.0.1 and ::1 are always included",
    )
    init.add_argument(
        "--client", action="append", default=[], help="also a client certificate (repeat)"
    )
    init.add_argument("--force", action="store_true", help="replace an existing CA (rotation)")
    issue = sub.add_parser("issue", help="sign one more certificate with the existing CA")
    issue.add_argument("stem", help="file name without extension, e.g. client-nas")
    issue.add_argument("--cn", help="subject common name (default: the stem)")
    issue.add_argument("--name", action="append", default=[], help="SAN entry (repeat)")
    issue.add_argument("--server", action="store_true", help="for a server (serverAuth)")
    issue.add_argument("--client", action="store_true", help="for a client (clientAuth)")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose import certs

    folder = Path(args.dir) if args.dir else settings.data_path / "certs"
    try:
        if args.action == "init":
            ca, server, clients = certs.init(
                folder, names=args.name, clients=args.client, force=args.force
            )
            written = [ca.cert_path, server.cert, server.key]
            written += [p for c in clients for p in (c.cert, c.key)]
        else:
            issued = certs.issue(
                certs.Authority(folder),
                args.stem,
                common_name=args.cn or args.stem,
                names=args.name,
                server=args.server,
                client=args.client,
            )
            written = [issued.cert, issued.key]
    except certs.CertError as exc:
        print(f"unity certs: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0
