"""Running a host tool for a plugin: an argv list, a timeout, one-line errors, no shell.

Every plugin that reads a tool (smartctl, zpool, ipmitool, systemctl...) takes its command as
an argv prefix from its config, so a user can point it at ``sudo``, a wrapper or
``docker exec <container>``; the plugin adds its own arguments. Secrets never go on argv:
pass them in ``env`` (``ipmitool -E`` reads ``IPMI_PASSWORD``) or in a file the tool reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CommandError", "Output", "missing", "read_secret", "run"]

# Wrappers whose own existence says nothing about the tool they run, and their options that
# take a value (``sudo -u nut upsc``).
_WRAPPERS = frozenset({"sudo", "doas"})
_OPTIONS_WITH_VALUE = frozenset({"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U"})


class CommandError(RuntimeError):
    """The tool is missing, timed out or failed; the message says which in one line."""


@dataclass(frozen=True, slots=True)
class Output:
    """What a tool printed and how it exited (``run`` returns it when ``ok_codes`` allow)."""

    stdout: str
    stderr: str
    returncode: int


def missing(command: Sequence[str]) -> str | None:
    """Why ``command`` cannot run here ("smartctl not found on PATH"), or None.

    Only the program is looked up (the first word, or the word after ``sudo``/``doas`` when
    those wrap it, since a wrapper that exists says nothing about the tool).
    """
    if not command:
        return "no command configured"
    words = list(command)
    programs = [words[0]]
    if Path(words[0]).name in _WRAPPERS:
        rest = iter(words[1:])
        for word in rest:
            if word == "--":
                programs.append(next(rest, ""))
                break
            if word in _OPTIONS_WITH_VALUE:
                next(rest, None)
            elif not word.startswith("-"):
                programs.append(word)
                break
    for word in filter(None, programs):
        if os.sep in word and not os.access(word, os.X_OK):
            return f"{word} not executable"
        if os.sep not in word and shutil.which(word) is None:
            return f"{word} not found on PATH"
    return None


def run(
    command: Sequence[str],
    args: Sequence[str] = (),
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    ok_codes: Sequence[int] = (0,),
) -> Output:
    """Run ``command + args`` without a shell and return its output.

    Args:
        command: The configured argv prefix (``["smartctl"]``, ``["sudo", "-n", "zpool"]``).
        args: The plugin's own arguments.
        timeout: Seconds before the tool is killed.
        env: Extra environment for the child (secrets go here, never in ``args``).
        ok_codes: Exit codes that are not a failure (smartctl's status bits, grep's 1...).

    Raises:
        CommandError: the tool is missing, timed out, or exited with a code outside
            ``ok_codes`` (its first line of stderr, or stdout, is in the message).
    """
    argv = [*command, *args]
    if not argv:
        raise CommandError("no command configured")
    child_env = None if env is None else {**os.environ, **env}
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=child_env,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise CommandError(f"{argv[0]} not found") from None
    except PermissionError:
        raise CommandError(f"{argv[0]} is not executable") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"{argv[0]} did not answer within {timeout:g}s") from None
    out = done.stdout.decode(errors="replace")
    err = done.stderr.decode(errors="replace")
    if done.returncode not in ok_codes:
        why = (err.strip() or out.strip()).splitlines()
        raise CommandError(f"{argv[0]} exited {done.returncode}: {why[0][:200] if why else ''}")
    return Output(out, err, done.returncode)


def read_secret(env_var: str = "", file: str = "") -> str | None:
    """A secret from an environment variable or a file (first line, stripped), or None.

    Config files name where the secret is (``password_env = "NUT_PASSWORD"``,
    ``password_file = "/run/secrets/nut"``), never the secret itself.

    Raises:
        CommandError: the file is named but cannot be read (the message has no content of it).
    """
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    if file:
        try:
            return Path(file).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise CommandError(f"cannot read secret file {file}: {type(exc).__name__}") from None
    return None
