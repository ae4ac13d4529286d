"""Auto-detection: the collector runs every built-in plugin that applies here, says why the
others are left out, and a listed plugin that does not apply is "not applicable", not a failure."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from unity.collectors.runtime.detection import detect
from unity.collectors.runtime.runner import default_config
from unity.compose.cli import main
from unity.sdk import Plugin, Sink
from unity.sdk.discovery import discover
from unity.sdk.settings import load_settings


class External(Plugin):
    id = "external-probe"

    def collect(self, sink: Sink) -> None:
        raise AssertionError("detection never collects")


class Broken(Plugin):
    id = "broken-probe"

    def unavailable(self) -> str | None:
        raise OSError("probe exploded")

    def collect(self, sink: Sink) -> None:
        raise AssertionError("detection never collects")


def test_detection_runs_builtins_that_apply_and_names_why_the_rest_do_not() -> None:
    available = discover()
    found = detect({**available, External.id: External})
    assert {"cpu", "memory", "disk", "net", "system"} <= set(found.applies)
    assert "external" in found.left_out[External.id]
    assert set(found.applies).isdisjoint(found.left_out)
    assert set(found.applies) | set(found.left_out) == {*available, External.id}
    if shutil.which("nvidia-smi") is None:
        assert found.left_out["gpu"] == "nvidia-smi not found on PATH"


def test_a_failing_probe_leaves_the_plugin_out_with_the_reason() -> None:
    Broken.__module__ = "unity.collectors.plugins.broken"  # as a built-in would be
    found = detect({Broken.id: Broken})
    assert found.applies == ()
    assert found.left_out == {Broken.id: "its check failed: OSError: probe exploded"}


def test_no_plugin_list_means_the_detected_ones_and_the_setting_overrides() -> None:
    available = discover()
    detected = default_config(load_settings(env={}), available)
    assert [s.plugin for s in detected.plugins] == list(detect(available).applies)
    listed = default_config(load_settings(env={"UNITY_COLLECT_PLUGINS": "cpu,gpu"}), available)
    assert [s.plugin for s in listed.plugins] == ["cpu", "gpu"]
    assert load_settings(env={"UNITY_COLLECT_PLUGINS": ""}).collect_plugins == ()


def test_list_shows_detected_plugins_and_reasons(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNITY_COLLECT_PLUGINS", raising=False)
    assert main(["collector", "--list"]) == 0
    out = capsys.readouterr().out
    detected, _, left_out = out.partition("left out:")
    assert "  cpu\n" in detected and "  memory\n" in detected
    found = detect(discover())
    for plugin_id, reason in found.left_out.items():
        assert f"{plugin_id}" in left_out and reason in left_out


def test_once_with_a_plugin_that_cannot_run_here_is_not_a_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "collector.toml"
    config.write_text(
        '[agent]\nhost = "det"\nself_metrics = false\n\n[[plugins.cpu]]\n\n'
        f'[[plugins.gpu]]\ncommand = "{tmp_path / "no-nvidia-smi"}"\n'
    )
    assert main(["collector", "--config", str(config), "--once"]) == 0
    captured = capsys.readouterr()
    plugins = {msgspec.json.decode(line)["message"]["plugin"] for line in captured.out.splitlines()}
    assert plugins == {"cpu"}
    assert f"gpu not applicable here: {tmp_path / 'no-nvidia-smi'} not executable" in captured.err
