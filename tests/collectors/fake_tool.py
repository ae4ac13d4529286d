"""A fake command-line tool on PATH that prints a recorded output and records its argv."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest


def install(
    monkeypatch: pytest.MonkeyPatch,
    folder: Path,
    name: str,
    stdout: Path,
    *,
    exit_code: int = 0,
) -> Path:
    """Put ``name`` first on PATH; returns the file where each call's argv is appended."""
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / f"{name}.calls"
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"sys.stdout.write(open({str(stdout)!r}).read())\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return calls


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
