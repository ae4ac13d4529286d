"""Reading the host through a root path, so every reader also runs on a fixture tree.

psutil reads ``psutil.PROCFS_PATH``, a process-wide global; plugins that point it elsewhere
(tests, a container watching its host through ``/host/proc``) hold a lock while they do.
"""

from __future__ import annotations

import contextlib
import os
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


def namespaced(proc_root: str, name: str) -> list[Path]:
    """Where a per-namespace file of /proc (``mounts``, ``net/dev``) is read from, best first.

    ``self/`` and ``net/`` (a link to ``self/net``) show the reader's own mount and network
    namespaces. Under a host's /proc mounted into a container (``/host/proc``) that is the
    container's view, so PID 1's, the host's init, comes first there. The default /proc keeps
    the collector's own view: it is the host's unless the collector was given namespaces of its
    own on purpose (systemd's PrivateNetwork, ProtectSystem), disk's statvfs runs in the
    collector's own mount namespace anyway, and /proc/1 may be hidden from a non-root reader
    (hidepid). ``self/`` and the plain name follow for a PID 1 that cannot be read and for
    fixture trees.
    """
    own = [Path(proc_root, "self", name), Path(proc_root, name)]
    if os.path.normpath(proc_root) == DEFAULT_PROC:
        return own
    return [Path(proc_root, "1", name), *own]


def read_namespaced(proc_root: str, name: str) -> str | None:
    """The first readable of ``namespaced(proc_root, name)``, or None when none is."""
    for path in namespaced(proc_root, name):
        text = read_text(path)
        if text is not None:
            return text
    return None


def require_namespaced(proc_root: str, name: str) -> str:
    """Like ``read_namespaced``, for a file the reader cannot do without."""
    text = read_namespaced(proc_root, name)
    if text is None:
        tried = ", ".join(str(p) for p in namespaced(proc_root, name))
        raise FileNotFoundError(f"none of {tried} can be read")
    return text


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
