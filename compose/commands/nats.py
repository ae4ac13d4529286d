from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unity.sdk.settings import Settings

NAME = "nats"
HELP = "NATS users per role and per collector host (bcrypt hashes for the server, 0600 files)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", help="folder of the users file and passwords (<data>/secrets)")
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("users", help="the role users: ingest, api, alerts, admin")
    add = sub.add_parser("add-host", help="a user for one collector host (its subjects only)")
    add.add_argument("host", help="the host name the collector publishes as")
    add.add_argument("--url", default="tls://<hub>:4222", help="NATS URL(s) in the printed line")
    remove = sub.add_parser("remove", help="remove a user (reload the servers afterwards)")
    remove.add_argument("name")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose.natsusers import NatsUsersError, UserStore

    store = UserStore(
        Path(args.dir) if args.dir else settings.data_path / "secrets", settings.subject_root
    )
    try:
        if args.action == "users":
            users = store.init()
            for user in users:
                print(f"{user.name}: password in {store.password_path(user.name)}")
        elif args.action == "add-host":
            user = store.add_host(args.host)
            secret = store.password_path(user.name)
            print(f"{user.name}: password in {secret}; reload the NATS servers (SIGHUP)")
            print(
                "On that machine, with the CA at /etc/unity/ca.crt and this password in "
                "/etc/unity/nats.password (0600):"
            )
            print(
                f"  UNITY_NATS_URL={args.url} UNITY_NATS_CA=/etc/unity/ca.crt "
                f"UNITY_NATS_USER={user.name} UNITY_NATS_PASSWORD_FILE=/etc/unity/nats.password "
                f"UNITY_HOST_NAME={user.name} unity collector"
            )
        else:
            store.remove(args.name)
            print(f"{args.name}: removed; reload the NATS servers (SIGHUP)")
    except NatsUsersError as exc:
        print(f"unity nats: {exc}", file=sys.stderr)
        return 1
    print(f"users file: {store.conf_path}")
    return 0
