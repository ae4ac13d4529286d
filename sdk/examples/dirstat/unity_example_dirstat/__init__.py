"""Example external Unity plugin: how many files a directory holds, their size, the newest's age.

Useful to watch a backup target, a download folder or a spool that should stay empty.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import msgspec

from unity import sdk


class Config(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Settings of dirstat (see sample.toml)."""

    paths: list[str] = []
    recursive: bool = True


class DirStatPlugin(sdk.Plugin):
    id = "dirstat"
    name = "Directory statistics"
    version = "1.0.0"
    description = "File count, total size and newest-file age of directories"
    author = "Unity authors"
    category = "storage"
    tags = ("files", "backup")
    Config = Config
    metrics = (
        sdk.Metric("dirstat_files", "files", "gauge", "Regular files in the directory"),
        sdk.Metric("dirstat_bytes", "bytes", "gauge", "Total size of those files"),
        sdk.Metric(
            "dirstat_newest_age_seconds", "seconds", "gauge", "Age of the newest file's mtime"
        ),
    )

    def collect(self, sink: sdk.Sink) -> None:
        assert isinstance(self.config, Config)
        now = time.time()
        for path in self.config.paths:
            files, size, newest = _scan(Path(path), self.config.recursive)
            labels = {"path": path}
            sink.add("dirstat_files", files, labels)
            sink.add("dirstat_bytes", size, labels)
            if newest is not None:
                sink.add("dirstat_newest_age_seconds", max(0.0, now - newest), labels)


def _scan(root: Path, recursive: bool) -> tuple[int, int, float | None]:
    """Count regular files (symlinks not followed); a missing directory raises, as it should."""
    files = size = 0
    newest: float | None = None
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for folder, _, names in walker:
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            if not stat.S_ISREG(st.st_mode):
                continue
            files += 1
            size += st.st_size
            newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
    return files, size, newest


def main() -> None:
    """``unity-dirstat [--once] [--config file.toml]``: run standalone."""
    sdk.run(DirStatPlugin)
