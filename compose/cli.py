"""The `unity` command: global options here, each subcommand in compose/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

from unity.compose import commands
from unity.sdk.settings import SettingsError, load_settings


def _commands() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        found[module.NAME] = module
    return found


def _parser(modules: dict[str, ModuleType]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unity", description="Unity telemetry pipeline")
    parser.add_argument("--config", help="TOML settings file (also UNITY_CONFIG)")
    parser.add_argument("--data-dir", help="folder for all data (default ./.unity)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, module in modules.items():
        module.configure(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    modules = _commands()
    args = _parser(modules).parse_args(argv)
    try:
        settings = load_settings(
            args.config,
            data_dir=args.data_dir,
            api_port=getattr(args, "api_port", None),
        )
    except SettingsError as exc:
        print(f"unity: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    result: int = modules[args.command].run(args, settings)
    return result
