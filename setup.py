"""Installs the repository's top-level folders under one package, ``unity`` (``unity.api``...).

pyproject.toml cannot list packages under a prefix found at build time; this does, so a new
plugin folder is installed with no list to keep in sync. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

TOP = ("schemas", "sdk", "collectors", "ingest", "api", "migrations", "compose")

found = find_packages(include=[*TOP, *(f"{t}.*" for t in TOP)], exclude=["sdk.examples*"])
setup(
    packages=[f"unity.{p}" for p in found],
    package_dir={f"unity.{t}": t for t in TOP},
)
