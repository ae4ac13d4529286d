from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from unity_example_dirstat import Config, DirStatPlugin

from unity.sdk import ConfigError
from unity.sdk.check import check
from unity.sdk.testing import collect, run


def test_counts_files_and_bytes_recursively(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a").write_bytes(b"x" * 10)
    (tmp_path / "sub" / "b").write_bytes(b"y" * 5)
    os.utime(tmp_path / "a", (0, 1_000_000_000))
    sink = collect(DirStatPlugin(Config(paths=[str(tmp_path)])))
    labels = {"path": str(tmp_path)}
    assert sink.value("dirstat_files", labels) == 2
    assert sink.value("dirstat_bytes", labels) == 15
    assert sink.value("dirstat_newest_age_seconds", labels) < 60


def test_flat_scan_skips_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y")
    sink = collect(DirStatPlugin(Config(paths=[str(tmp_path)], recursive=False)))
    assert sink.value("dirstat_files") == 0
    assert sink.find("dirstat_newest_age_seconds") == []


def test_missing_directory_is_an_error_report_not_data(tmp_path: Path) -> None:
    result = asyncio.run(run(DirStatPlugin(Config(paths=[str(tmp_path / "gone")]))))
    assert result.batch is None
    assert result.report.status == "error" and "gone" in result.report.message


def test_sample_config_loads_and_unknown_keys_are_named() -> None:
    config = DirStatPlugin.load_config(Path(__file__).parent.parent / "sample.toml")
    assert isinstance(config, Config) and config.recursive
    with pytest.raises(ConfigError, match="'recursiv'"):
        DirStatPlugin.parse_config({"recursiv": True})


def test_readme_shows_the_sample_config_and_every_metric() -> None:
    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    assert (root / "sample.toml").read_text() in readme
    assert all(f"`{m.name}` | {m.unit} | {m.kind} |" in readme for m in DirStatPlugin.metrics)


def test_meets_the_contract(tmp_path: Path) -> None:
    findings = check(DirStatPlugin, Config(paths=[str(tmp_path)]))
    assert [f for f in findings if f.level == "error"] == []
