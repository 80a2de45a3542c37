"""Configuration: defaults, environment overrides, and errors that name their key."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_network
from pathlib import Path

import pytest

from clickbus.config import (
    ENV_OVERRIDES,
    CampaignConfig,
    Config,
    EdgeConfig,
    HostPort,
    InsertKeyConfig,
    Secret,
    from_mapping,
    load,
)
from clickbus.errors import ConfigError
from clickbus.keystore import encode_key, load_keyring
from clickbus.settings.declare import fields_of, is_table, item_table, walk
from clickbus.settings.toml import render
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
    secret = "whsec_dG9wc2VjcmV0"  # base64 of "topsecret"
    config = from_mapping({"members": {"13": {"click_uri": "https://b.example/", "secret": secret}}}, env={})
    assert "dG9wc2VjcmV0" not in repr(config)


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


def test_committed_default_file_is_the_generated_one() -> None:
    committed = (ROOT / "conf" / "clickbus.toml").read_text(encoding="utf-8")
    assert committed == render(Config), "regenerate it: python -m clickbus config defaults > conf/clickbus.toml"


def test_generated_file_loads_to_exactly_the_declared_defaults(tmp_path: Path) -> None:
    path = tmp_path / "clickbus.toml"
    path.write_text(render(Config), encoding="utf-8")
    assert dataclasses.replace(load(path, env={}), source=None) == Config()


def test_every_setting_is_documented() -> None:
    keyed = {"member_id", "campaign_id", "name", "source"}  # table keys and what `load` sets
    settings = [f for f in walk(Config) if not is_table(f.kind)]
    tables = [item for f in settings if (item := item_table(f.kind)) is not None]
    settings += [f for item in tables for f in fields_of(item, item.__name__ + ".")]
    undocumented = [f.path for f in settings if f.doc is None and f.name not in keyed]
    assert settings and undocumented == []


def test_environment_overrides_are_derived_from_the_declarations() -> None:
    assert ENV_OVERRIDES == {
        "CLICKBUS_DATA_DIR": "data_dir",
        "CLICKBUS_LISTEN": "edge.listen",
        "CLICKBUS_PUBLIC_URL": "edge.public_url",
        "CLICKBUS_ADMIN_LISTEN": "edge.admin_listen",
        "CLICKBUS_KAFKA_BOOTSTRAP": "log.kafka.bootstrap_servers",
        "CLICKBUS_REPORTS_DSN": "reports.postgres_dsn",
    }
    config = from_mapping({}, env={"CLICKBUS_ADMIN_LISTEN": "[::1]:9100"})
    assert config.edge.admin_listen == HostPort("::1", 9100)


def test_agreed_new_settings_and_their_defaults() -> None:
    config = Config()
    edge, embedded = config.edge, config.log.embedded
    assert edge.admin_listen == HostPort("127.0.0.1", 8081)
    assert (edge.header_timeout_s, edge.body_timeout_s, edge.keepalive_timeout_s) == (10.0, 10.0, 15.0)
    assert (edge.trusted_proxies, edge.max_url_bytes, edge.max_text_chars) == ((), 4096, 1024)
    assert (embedded.segment_mb, embedded.retention_hours, embedded.retention_mb) == (64, 168, 10240)
    assert (config.log.stop_timeout_s, config.insert_keys) == (10.0, ())


def test_new_settings_are_parsed() -> None:
    digest = "ab" * 32
    raw = {
        "edge": {"trusted_proxies": ["10.0.0.0/8", "2001:db8::/32"], "keepalive_timeout_s": 5},
        "insert_keys": {"ad-server": {"sha256": digest, "members": [13, 14]}, "any": {"sha256": digest}},
    }
    config = from_mapping(raw, env={})
    assert config.edge.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("2001:db8::/32"))
    assert config.edge.keepalive_timeout_s == 5.0
    assert config.insert_keys == (
        InsertKeyConfig("ad-server", bytes.fromhex(digest), (13, 14)),
        InsertKeyConfig("any", bytes.fromhex(digest)),
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"edge": {"trusted_proxies": ["10.0.0.1/8"]}}, "edge.trusted_proxies[0]: expected a CIDR network"),
        ({"edge": {"trusted_proxies": "10.0.0.0/8"}}, "edge.trusted_proxies: expected a list"),
        ({"edge": {"admin_listen": "x"}}, "edge.admin_listen: expected host:port, got 'x'"),
        ({"edge": {"header_timeout_s": 0}}, "edge.header_timeout_s: expected a positive number, got 0"),
        ({"edge": {"max_url_bytes": 1.5}}, "edge.max_url_bytes: expected int, got 1.5"),
        ({"insert_keys": {"a": {}}}, "insert_keys.a.sha256: required"),
        ({"insert_keys": {"a": {"sha256": "z" * 64}}}, "insert_keys.a.sha256: expected 64 hex digits"),
        (
            {"insert_keys": {"a": {"sha256": "ab" * 32, "members": [0]}}},
            "insert_keys.a.members[0]: expected a positive",
        ),
        ({"log": {"stop_timeout_s": -1}}, "log.stop_timeout_s: expected a positive number"),
        ({"log": {"embedded": {"retention_mb": 0}}}, "log.embedded.retention_mb: expected a positive number"),
        ({"log": {"kafka": {"linger_ms": -1}}}, "log.kafka.linger_ms: expected >= 0, got -1"),
        ({"log": {"kafka": {"security_protocol": "TLS"}}}, "log.kafka.security_protocol: expected one of PLAINTEXT"),
        ({"log": {"kafka": {"sasl_password": ""}}}, "log.kafka.sasl_password: expected a non-empty string"),
        ({"campaigns": {"x": {"member_id": 1, "placements": ["a"]}}}, "campaigns.x: expected a numeric campaign id"),
        ({"campaigns": {"1": {"placements": ["a"]}}}, "campaigns.1.member_id: required"),
        (
            {"members": {"13": {"click_uri": "https://b/", "secret_env": "CLICKBUS_TEST_UNSET"}}},
            "members.13.secret_env",
        ),
        ({"tokens": {"keys": [{"id": "a b", "env": "X"}]}}, "tokens.keys[0].id: expected 1-16 characters"),
        ({"tokens": "x"}, "tokens: expected a table"),
        ({"source": "x.toml"}, "source: unknown key"),
        ({"members": {"13": {"click_uri": "https://b/", "member_id": 14}}}, "members.13.member_id: unknown key"),
        ({"api_keys": {"a": {"sha256": "ab" * 32, "name": "b"}}}, "api_keys.a.name: unknown key"),
    ],
)
def test_new_and_rewritten_checks_name_their_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    assert any(p.startswith(message) for p in caught.value.problems), caught.value.problems


def test_unknown_keys_at_every_depth_are_reported_together() -> None:
    raw = {
        "colour": 1,
        "edge": {"lisen": "x"},
        "log": {"kafka": {"bootstrap": "k:1"}, "embedded": {"size": 1}},
        "members": {"13": {"click_url": "https://b/", "click_uri": "https://b/"}},
        "tokens": {"keys": [{"id": "k1", "env": "K", "retire": True}], "signing_key": "k1"},
    }
    with pytest.raises(ConfigError) as caught:
        from_mapping(raw, env={})
    assert sorted(caught.value.problems) == [
        "colour: unknown key",
        "edge.lisen: unknown key",
        "log.embedded.size: unknown key",
        "log.kafka.bootstrap: unknown key",
        "members.13.click_url: unknown key",
        "tokens.keys[0].retire: unknown key",
    ]


def test_member_secret_from_environment_stays_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKBUS_TEST_MEMBER_SECRET", "whsec_fromenv")
    raw = {"members": {"13": {"click_uri": "https://b.example/", "secret_env": "CLICKBUS_TEST_MEMBER_SECRET"}}}
    member = from_mapping(raw, env={}).members[13]
    assert member.secret == Secret(b"whsec_fromenv") and "fromenv" not in repr(member)


@pytest.mark.parametrize(
    "raw",
    [
        {"log": {"kafka": {"sasl_password": "hunter2-secret"}}},
        {"api_keys": {"a": {"sha256": "5ec7e7" + "0" * 58}}},
        {"insert_keys": {"a": {"sha256": "5ec7e7" + "0" * 58}}},
    ],
)
def test_no_secret_or_key_hash_in_reprs(raw: dict[str, object]) -> None:
    shown = repr(from_mapping(raw, env={}))
    assert "hunter2" not in shown and "5ec7e7" not in shown and "\\x5e\\xc7" not in shown


def test_callers_keep_positional_constructors_and_replace() -> None:
    campaign = CampaignConfig(1, 13, ("a",))
    assert dataclasses.replace(campaign, member_id=14) == CampaignConfig(1, 14, ("a",))
    assert dataclasses.replace(Config(), edge=EdgeConfig(HostPort("h", 1))).edge.listen == HostPort("h", 1)


@pytest.mark.parametrize(
    ("listen", "admin_listen"),
    [("127.0.0.1:8080", "127.0.0.1:8080"), ("0.0.0.0:8080", "127.0.0.1:8080"), ("[::1]:9000", "[::]:9000")],
)
def test_the_two_listeners_on_one_address_are_refused_naming_both_keys(listen: str, admin_listen: str) -> None:
    """Before the fix the second listener silently shared the first's port (SO_REUSEPORT)."""
    with pytest.raises(ConfigError) as caught:
        from_mapping({"edge": {"listen": listen, "admin_listen": admin_listen}}, env={})
    (problem,) = caught.value.problems
    assert problem.startswith("edge.admin_listen: ") and f"overlaps edge.listen ({listen})" in problem


def test_listeners_on_one_port_of_different_hosts_are_allowed() -> None:
    config = from_mapping({"edge": {"listen": "127.0.0.2:8080", "admin_listen": "127.0.0.1:8080"}}, env={})
    assert config.edge.listen.port == config.edge.admin_listen.port


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("plain-shared-secret", "expected a Standard Webhooks secret, whsec_ followed by base64"),
        ("whsec_", "expected whsec_ followed by base64 of the key"),
        ("whsec_not base64!", "expected whsec_ followed by base64 of the key"),
    ],
)
def test_a_member_secret_that_is_not_a_standard_webhooks_secret_is_refused_naming_the_key(
    secret: str, problem: str
) -> None:
    """Every callback signed with it would fail the bidder's Standard Webhooks check (401)."""
    with pytest.raises(ConfigError) as refused:
        from_mapping({"members": {"13": {"click_uri": "https://b.example/", "secret": secret}}}, env={})
    assert refused.value.problems == [f"members.13.secret: {problem}"]
    assert secret not in str(refused.value) or secret == "whsec_"


def test_a_member_secret_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLICKBUS_TEST_MEMBER_SECRET", "shh-plain")
    raw = {"members": {"13": {"click_uri": "https://b.example/", "secret_env": "CLICKBUS_TEST_MEMBER_SECRET"}}}
    with pytest.raises(ConfigError) as refused:
        from_mapping(raw, env={})
    problem = "members.13.secret_env: expected a Standard Webhooks secret, whsec_ followed by base64"
    assert refused.value.problems == [problem]
    assert "shh-plain" not in str(refused.value)
