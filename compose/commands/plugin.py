"""`unity plugin new|check|run|schemas`: tools for plugin authors."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unity.schemas import jsonschema
from unity.sdk import ConfigError, standalone
from unity.sdk.check import check
from unity.sdk.discovery import DiscoveryError, load
from unity.sdk.scaffold import ScaffoldError, scaffold
from unity.sdk.settings import Settings

NAME = "plugin"
HELP = "write, check and run plugins"


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    new = sub.add_parser("new", help="scaffold a plugin folder")
    new.add_argument("id", help="plugin id, e.g. disk-free")
    new.add_argument("--dir", type=Path, default=Path(), help="parent folder (default: here)")
    chk = sub.add_parser("check", help="validate a plugin and run collect once, offline")
    chk.add_argument("target", help="installed plugin id, or package.module:Class")
    chk.add_argument(
        "--config", dest="plugin_config", type=Path, help="TOML file with the plugin's config"
    )
    chk.add_argument("--timeout", type=float, default=10.0, help="seconds for the collect")
    run_ = sub.add_parser("run", help="run a plugin as its own process (NATS from UNITY_NATS_*)")
    run_.add_argument("target", help="installed plugin id, or package.module:Class")
    standalone.add_arguments(run_)
    schemas_ = sub.add_parser("schemas", help="regenerate schemas/json from the wire Structs")
    schemas_.add_argument("--check", action="store_true", help="exit 1 if the files are stale")


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        if args.action == "new":
            root = scaffold(args.id, args.dir)
            print(f"created {root}; next: unity plugin check {args.id} after pip install -e {root}")
            return 0
        if args.action == "schemas":
            return jsonschema.main(["--check"] if args.check else [])
        cls = load(args.target)
        if args.action == "run":
            return standalone.main(cls, args, settings)
        config = cls.load_config(args.plugin_config) if args.plugin_config else None
    except (ScaffoldError, DiscoveryError, ConfigError) as exc:
        print(f"unity plugin: {exc}", file=sys.stderr)
        return 2
    findings = check(cls, config, args.timeout)
    for finding in findings:
        print(finding)
    errors = sum(f.level == "error" for f in findings)
    verdict = "FAILED" if errors else "ok"
    print(f"{cls.id}: {verdict} ({errors} error(s), {len(findings) - errors} warning(s))")
    return 1 if errors else 0
