"""Reading the host through a root path, so every reader also runs on a fixture tree.

psutil reads ``psutil.PROCFS_PATH``, a process-wide global; plugins that point it elsewhere
(tests, a container watching its host through ``/host/proc``) hold a lock while they do.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil

DEFAULT_PROC = "/proc"
DEFAULT_SYS = "/sys"

_procfs_lock = threading.Lock()


@contextlib.contextmanager
def procfs(root: str) -> Iterator[None]:
    """Run psutil calls against ``root`` instead of /proc for the duration of the block."""
    if root == DEFAULT_PROC:
        yield
        return
    with _procfs_lock:
        previous = psutil.PROCFS_PATH
        psutil.PROCFS_PATH = root
        try:
            yield
        finally:
            psutil.PROCFS_PATH = previous


def read_text(path: Path) -> str | None:
    """The file's text, or None when it does not exist or cannot be read (sysfs is like that)."""
    try:
        return path.read_text()
    except (FileNotFoundError, PermissionError, NotADirectoryError):
        return None
    except OSError:
        # Some sysfs attributes fail with EIO/ENODATA when the device is asleep.
        return None


def read_number(path: Path) -> float | None:
    """A sysfs attribute holding one number, or None when absent or not a number."""
    text = read_text(path)
    if text is None:
        return None
    try:
        return float(text.strip())
    except ValueError:
        return None


def read_word(path: Path) -> str | None:
    text = read_text(path)
    return None if text is None else text.strip()
