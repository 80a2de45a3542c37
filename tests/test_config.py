"""Configuration: defaults, environment overrides, and errors that name their key."""

from __future__ import annotations

from pathlib import Path

import pytest

from clickbus.config import HostPort, from_mapping, load
from clickbus.errors import ConfigError
from clickbus.keystore import encode_key, load_keyring
from clickbus.tokens import new_key

ROOT = Path(__file__).parent.parent


def test_shipped_default_config_loads_with_documented_defaults() -> None:
    config = load(ROOT / "conf" / "clickbus.toml", env={})
    assert config.edge.listen == HostPort("127.0.0.1", 8080)
    assert config.log.backend == "embedded"
    assert config.log_path == Path("var/log")


def test_environment_overrides() -> None:
    env = {
        "CLICKBUS_LISTEN": "0.0.0.0:9000",
        "CLICKBUS_PUBLIC_URL": "https://clk.example/",
        "CLICKBUS_DATA_DIR": "/srv/clickbus",
        "CLICKBUS_KAFKA_BOOTSTRAP": "k1:9092,k2:9092",
    }
    config = from_mapping({"edge": {"listen": "127.0.0.1:1"}}, env=env)
    assert config.edge.listen == HostPort("0.0.0.0", 9000)
    assert config.edge.public_url == "https://clk.example"
    assert config.data_dir == Path("/srv/clickbus")
    assert config.log.backend == "kafka"
    assert config.log.kafka.bootstrap_servers == (HostPort("k1", 9092), HostPort("k2", 9092))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"edge": {"listen": "nope"}}, "edge.listen: expected host:port, got 'nope'"),
        ({"edge": {"listen": "h:70000"}}, "edge.listen: expected host:port"),
        ({"edge": {"public_url": "ftp://x"}}, "edge.public_url: expected an http(s) base URL"),
        ({"edge": {"max_body_bytes": "big"}}, "edge.max_body_bytes: expected int, got 'big'"),
        ({"edge": {"trust_forwarded": 1}}, "edge.trust_forwarded: expected bool"),
        ({"edge": {"lisen": "x"}}, "edge.lisen: unknown key"),
        ({"log": {"backend": "redis"}}, "log.backend: expected one of embedded, kafka"),
        ({"log": {"backend": "kafka"}}, "log.kafka.bootstrap_servers: required"),
        ({"log": {"kafka": {"bootstrap_servers": "a:1,b"}}}, "log.kafka.bootstrap_servers: expected host:port"),
        ({"tokens": {"ttl_s": 0}}, "tokens.ttl_s: expected a positive number"),
        ({"tokens": {"keys": [{"id": "k1"}]}}, "tokens.keys[0].file: give exactly one of file or env"),
        ({"tokens": {"keys": [{"id": "k1", "env": "X"}]}}, "tokens.signing_key: expected the id of a key"),
        ({"members": {"13": {}}}, "members.13.click_uri: required"),
        ({"members": {"x": {"click_uri": "https://b/"}}}, "members.x: expected a numeric member id"),
        ({"members": {"13": {"click_uri": "gopher://b"}}}, "members.13.click_uri: expected an http(s) URL"),
        ({"campaigns": {"1": {"member_id": 13}}}, "campaigns.1.placements: expected a non-empty list"),
        ({"api_keys": {"a": {"sha256": "abc"}}}, "api_keys.a.sha256: expected 64 hex digits"),
    ],
)
def test_invalid_values_name_their_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping({"edge": {"listen": "x", "public_url": "y"}, "tokens": {"ttl_s": -1}}, env={})
    assert len(caught.value.problems) == 3


def test_bad_environment_override_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"edge\.listen"):
        from_mapping({}, env={"CLICKBUS_LISTEN": "nohost"})


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("edge = [")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load(bad)


def test_secrets_stay_out_of_reprs() -> None:
    config = from_mapping({"members": {"13": {"click_uri": "https://b.example/", "secret": "whsec_topsecret"}}}, env={})
    assert "topsecret" not in repr(config)


def test_first_start_generates_a_private_key_and_keeps_it(tmp_path: Path) -> None:
    config = from_mapping({"data_dir": str(tmp_path)}, env={})
    first = load_keyring(config)
    assert (tmp_path / "signing.key").stat().st_mode & 0o077 == 0
    assert load_keyring(config).signing_key == first.signing_key


def test_keys_from_file_and_environment_with_rotation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "k1.key").write_text(encode_key(new_key()))
    monkeypatch.setenv("CLICKBUS_TEST_K2", encode_key(new_key()))
    raw = {
        "tokens": {
            "signing_key": "k2",
            "keys": [
                {"id": "k1", "file": str(tmp_path / "k1.key")},
                {"id": "k2", "env": "CLICKBUS_TEST_K2"},
                {"id": "k0", "env": "UNSET_BUT_RETIRED", "retired": True},
            ],
        }
    }
    keyring = load_keyring(from_mapping(raw, env={}))
    assert keyring.signing_key == "k2"
    assert "k1" in repr(keyring) and "k0" not in repr(keyring)


def test_short_key_material_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k1.key").write_text(encode_key(b"short"))
    raw = {"tokens": {"signing_key": "k1", "keys": [{"id": "k1", "file": str(tmp_path / "k1.key")}]}}
    with pytest.raises(ConfigError, match=r"tokens.keys\[0\] \(k1\): shorter than 32 bytes"):
        load_keyring(from_mapping(raw, env={}))
