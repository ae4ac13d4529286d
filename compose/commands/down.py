from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time

from unity.sdk.settings import Settings

NAME = "down"
HELP = "stop the `unity up` of this data folder; --purge also deletes all its data, everywhere"

STOP_TIMEOUT_S = 120.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--purge",
        action="store_true",
        help="then delete the data folder and the state kept for it elsewhere (PostgreSQL's "
        "cluster under /var/lib/unity when run as root); there is no undo",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    from unity.compose.embedded import state_elsewhere
    from unity.compose.status import supervisor_pid

    data = settings.data_path
    pid = supervisor_pid(data)
    if pid is not None and pid > 0:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while supervisor_pid(data) is not None:
            if time.monotonic() > deadline:
                print(f"unity down: `unity up` (pid {pid}) did not stop", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print(f"stopped `unity up` (pid {pid}) on {data}")
    elif pid is not None:
        print(f"unity down: {data / 'unity.lock'} is held but names no pid", file=sys.stderr)
        return 1
    else:
        print(f"`unity up` is not running on {data}")
    if args.purge:
        if not data.exists():
            print(f"nothing to delete: {data} does not exist")
            return 0
        elsewhere = state_elsewhere(data)
        for folder in (*elsewhere, data):
            shutil.rmtree(folder)
            print(f"deleted {folder}")
        for folder in elsewhere:
            # The shared folder (/var/lib/unity) goes with its last cluster.
            with contextlib.suppress(OSError):
                folder.parent.rmdir()
    return 0
