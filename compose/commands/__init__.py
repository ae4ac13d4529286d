"""Subcommands of `unity`: one module each, found by compose.cli.

A module defines ``NAME``, ``HELP``, ``configure(parser)`` and ``run(args, settings) -> int``.
Settings are loaded once by compose.cli before ``run``.
"""
