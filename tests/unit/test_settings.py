from __future__ import annotations

from pathlib import Path

import pytest

from unity.sdk.settings import (
    Secrets,
    SettingsError,
    endpoints,
    load_settings,
    redact,
    settings_env,
)


def test_defaults_then_file_then_env_then_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "unity.toml"
    conf.write_text('api_port = 9000\nsubject_root = "lab"\ncollect_plugins = ["cpu"]\n')
    s = load_settings(conf, env={"UNITY_API_PORT": "9100", "UNITY_OTHER": "x"})
    assert (s.api_port, s.subject_root, s.collect_plugins) == (9100, "lab", ("cpu",))
    assert load_settings(conf, env={}, api_port=9200).api_port == 9200


def test_unknown_key_in_file_is_an_error_naming_it(tmp_path: Path) -> None:
    conf = tmp_path / "unity.toml"
    conf.write_text("api_prot = 9000\n")
    with pytest.raises(SettingsError, match="'api_prot'"):
        load_settings(conf, env={})


def test_bad_value_names_the_field() -> None:
    with pytest.raises(SettingsError, match="api_port"):
        load_settings(env={"UNITY_API_PORT": "eighty"})


def test_secrets_are_created_once_and_private(tmp_path: Path) -> None:
    first = Secrets.load_or_create(tmp_path)
    assert Secrets.load_or_create(tmp_path) == first
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600


def test_embedded_endpoints_keep_passwords_out_of_urls(tmp_path: Path) -> None:
    ep = endpoints(load_settings(env={}, data_dir=str(tmp_path)), env={})
    secrets = Secrets.load_or_create(tmp_path)
    for url in (ep.nats_url, ep.database_url, ep.valkey_url):
        assert secrets.postgres_password not in url and secrets.nats_password not in url
    assert ep.database_password == secrets.postgres_password


def test_external_urls_are_redacted_for_display(tmp_path: Path) -> None:
    ep = endpoints(
        load_settings(
            env={},
            data_dir=str(tmp_path),
            nats_url="nats://n:4222",
            database_url="postgresql://u:hunter2@db:5432/unity",
            valkey_url="valkey://:s3cret@cache:6379/0",
        ),
        env={},
    )
    shown = " ".join(ep.describe().values())
    assert "hunter2" not in shown and "s3cret" not in shown
    assert "db:5432" in shown and "cache:6379" in shown
    assert not (tmp_path / "secrets.json").exists()
    assert redact("nats://host:4222") == "nats://host:4222"


def test_settings_reach_children_one_way_and_come_back_equal(tmp_path: Path) -> None:
    settings = load_settings(
        env={},
        data_dir=str(tmp_path),
        api_open_reads=True,
        collect_plugins=["cpu", "disk"],
        retention_raw_days=7.5,
    )
    env = settings_env(settings)
    assert env["UNITY_API_OPEN_READS"] == "true" and env["UNITY_COLLECT_PLUGINS"] == "cpu,disk"
    assert env["UNITY_DATA_DIR"] == str(tmp_path.resolve())
    assert load_settings(env=env) == settings
