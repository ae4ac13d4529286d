"""A fake command-line tool whose output depends on its arguments, recording every call.

``fake_tool.install`` prints one file whatever it is asked; a tool asked once per device (smartctl)
or for several views (zpool list / status) needs an answer per argv.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

Answer = Path | tuple[Path, int]


def install(
    monkeypatch: pytest.MonkeyPatch,
    folder: Path,
    name: str,
    answers: Mapping[str, Answer],
) -> Path:
    """Put ``name`` first on PATH; ``answers`` maps the space-joined argv to a file (and exit).

    An argv without an answer exits 64 with a message on stderr, as a tool refusing its usage.
    Returns the file where each call's argv is appended as a JSON line.
    """
    folder.mkdir(parents=True, exist_ok=True)
    calls = folder / f"{name}.calls"
    table = {
        argv: ([str(a), 0] if isinstance(a, Path) else [str(a[0]), a[1]])
        for argv, a in answers.items()
    }
    script = folder / name
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"with open({str(calls)!r}, 'a') as fh:\n"
        "    fh.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"table = json.loads({json.dumps(table)!r})\n"
        "answer = table.get(' '.join(sys.argv[1:]))\n"
        "if answer is None:\n"
        "    sys.stderr.write('unexpected arguments: ' + ' '.join(sys.argv[1:]) + '\\n')\n"
        "    sys.exit(64)\n"
        "sys.stdout.write(open(answer[0]).read())\n"
        "sys.exit(answer[1])\n"
    )
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{os.environ['PATH']}")
    return calls


def calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
