"""The shared tool runner: detection through wrappers, one-line errors, secrets off argv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from unity.collectors.command import CommandError, missing, read_secret, run


def test_missing_looks_through_sudo_and_doas_at_the_tool() -> None:
    assert missing([sys.executable]) is None
    assert missing(["no-such-tool-here"]) == "no-such-tool-here not found on PATH"
    # The guide's own example: the wrapper's options are not the program.
    assert missing(["sudo", "-n", "no-such-tool-here"]) in (
        "no-such-tool-here not found on PATH",
        "sudo not found on PATH",
    )
    assert missing(["sudo", "-n", "-u", "nobody", sys.executable]) in (
        None,
        "sudo not found on PATH",
    )
    assert missing(["sudo", "--", "no-such-tool-here"]) in (
        "no-such-tool-here not found on PATH",
        "sudo not found on PATH",
    )
    assert missing(["/nonexistent/tool"]) == "/nonexistent/tool not executable"
    assert missing([]) == "no command configured"


def test_missing_accepts_an_installed_tool_behind_sudo(tmp_path: Path) -> None:
    sudo = tmp_path / "sudo"
    sudo.write_text('#!/bin/sh\nexec "$@"\n')
    sudo.chmod(0o755)
    assert missing([str(sudo), "-n", sys.executable]) is None
    assert missing([str(sudo), "-n", "no-such-tool-here"]) == "no-such-tool-here not found on PATH"


PY = [sys.executable, "-c"]


def test_run_says_what_failed_in_one_line() -> None:
    done = run([sys.executable, "-c"], ["print('hi')"], timeout=10)
    assert done.stdout == "hi\n" and done.returncode == 0
    with pytest.raises(CommandError, match=r"exited 3: boom$"):
        run(
            [sys.executable, "-c"],
            ["import sys; print('boom', file=sys.stderr); sys.exit(3)"],
            timeout=10,
        )
    assert (
        run(
            [sys.executable, "-c"], ["import sys; sys.exit(3)"], timeout=10, ok_codes=(3,)
        ).returncode
        == 3
    )
    with pytest.raises(CommandError, match=r"did not answer within 0\.2s"):
        run([sys.executable, "-c"], ["import time; time.sleep(5)"], timeout=0.2)
    with pytest.raises(CommandError, match="no-such-tool-here not found"):
        run(["no-such-tool-here"], timeout=1)


def test_secrets_come_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\nignored\n")
    assert read_secret(file=str(secret)) == "s3cret"
    monkeypatch.setenv("TOOL_PW", "from-env")
    assert read_secret("TOOL_PW", str(secret)) == "from-env"
    assert read_secret("UNSET_VARIABLE_HERE") is None
    with pytest.raises(CommandError) as raised:
        read_secret(file=str(tmp_path / "missing"))
    assert "s3cret" not in str(raised.value)
    # The environment reaches the child; argv stays clean of it.
    shown = run([sys.executable, "-c"], ["import os; print(os.environ['TOOL_PW'])"], timeout=10)
    assert shown.stdout.strip() == "from-env"
