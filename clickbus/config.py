"""Configuration: TOML files loaded once at start into typed, frozen objects.

Every section is read through a `_Reader` that knows its dotted path, so each
problem names its key (`edge.listen: expected host:port, got 'x'`). All problems
are collected and raised together as one `ConfigError`. Environment variables
override addresses and secrets (see `ENV_OVERRIDES`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from clickbus.errors import ConfigError

T = TypeVar("T")

ENV_LISTEN = "CLICKBUS_LISTEN"
ENV_PUBLIC_URL = "CLICKBUS_PUBLIC_URL"
ENV_DATA_DIR = "CLICKBUS_DATA_DIR"
ENV_KAFKA_BOOTSTRAP = "CLICKBUS_KAFKA_BOOTSTRAP"
ENV_OVERRIDES = {
    ENV_LISTEN: "edge.listen",
    ENV_PUBLIC_URL: "edge.public_url",
    ENV_DATA_DIR: "data_dir",
    ENV_KAFKA_BOOTSTRAP: "log.kafka.bootstrap_servers",
}


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value whose repr never shows it."""

    value: bytes = field(repr=False)

    def __repr__(self) -> str:
        return "Secret(***)"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One token signing key: its id and where its material lives."""

    id: str
    file: Path | None = None
    env: str | None = None
    retired: bool = False


@dataclass(frozen=True, slots=True)
class TokensConfig:
    ttl_s: int = 30 * 24 * 3600
    signing_key: str | None = None
    keys: tuple[KeyConfig, ...] = ()


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    listen: HostPort = HostPort("127.0.0.1", 8080)
    public_url: str = "http://127.0.0.1:8080"
    trust_forwarded: bool = False
    max_body_bytes: int = 64 * 1024
    access_log: bool = False
    shutdown_timeout_s: float = 10.0


@dataclass(frozen=True, slots=True)
class EmbeddedLogConfig:
    path: Path = Path("log")  # a directory of partitions, inside data_dir unless absolute
    max_batch: int = 1024
    segment_mb: int = 64
    retention_hours: int = 168
    retention_mb: int = 10240


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    bootstrap_servers: tuple[HostPort, ...] = ()
    client_id: str = "clickbus"
    partitions: int = 12
    replication_factor: int = 1
    linger_ms: int = 5
    append_budget_ms: int = 50
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # Kafka >= 0.11 supports it; off only for brokers that refuse InitProducerId v0 (Tansu 0.6)
    idempotence: bool = True
    request_timeout_ms: int = 10_000
    retry_backoff_ms: int = 200
    connect_timeout_ms: int = 5_000
    max_batch_bytes: int = 256 * 1024
    spool_dir: Path = Path("spool")  # inside data_dir unless absolute
    spool_max_mb: int = 1024
    group_session_timeout_ms: int = 10_000
    group_heartbeat_interval_ms: int = 3_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    backend: str = "embedded"
    topic_prefix: str = "clickbus"
    embedded: EmbeddedLogConfig = EmbeddedLogConfig()
    kafka: KafkaConfig = KafkaConfig()


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A member and its bidder's click handler."""

    member_id: int
    click_uri: str
    secret: Secret | None = None
    timeout_s: float = 2.0
    concurrency: int = 32
    enabled: bool = True
    allow_private: bool = False


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """The notifier: consumer group, dedup windows, retry schedule, circuit breaker, limits."""

    group: str = "clickbus-notifier"
    click_window_s: float = 3600.0
    impression_window_s: float = 60.0
    dedup_impressions: bool = True
    max_in_flight: int = 1024
    queue_per_slot: int = 16
    slot_wait_s: float = 0.25
    retry_base_s: float = 1.0
    retry_max_delay_s: float = 3600.0
    retry_horizon_s: float = 86400.0
    max_parked: int = 20000
    breaker_failures: int = 5
    breaker_cooldown_s: float = 30.0
    response_cap_bytes: int = 65536
    crawler_cache_size: int = 10000
    commit_interval_s: float = 0.2


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    campaign_id: int
    member_id: int
    placements: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    name: str
    sha256: bytes = field(repr=False)
    rate_per_s: float = 50.0


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration of one clickbus process."""

    data_dir: Path = Path("var")
    edge: EdgeConfig = EdgeConfig()
    log: LogConfig = LogConfig()
    tokens: TokensConfig = TokensConfig()
    members: Mapping[int, MemberConfig] = field(default_factory=dict)
    campaigns: Mapping[int, CampaignConfig] = field(default_factory=dict)
    api_keys: tuple[ApiKeyConfig, ...] = ()
    source: Path | None = None
    notifier: NotifierConfig = NotifierConfig()

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log.embedded.path


class _Reader:
    """Reads one TOML table, recording problems under its dotted path."""

    def __init__(self, raw: Mapping[str, Any], path: str, problems: list[str]) -> None:
        self.raw = raw
        self.path = path
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, message: str) -> None:
        self.problems.append(f"{self.key(name)}: {message}")

    def get(self, name: str, kind: type[T], default: T, check: Callable[[T], str | None] | None = None) -> T:
        self.seen.add(name)
        if name not in self.raw:
            return default
        value = self.raw[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(name, f"expected {kind.__name__}, got {value!r}")
            return default
        problem = check(value) if check else None
        if problem:
            self.fail(name, f"{problem}, got {value!r}")
            return default
        return value

    def optional(self, name: str, kind: type[T]) -> T | None:
        value: T | None = self.get(name, kind, None)
        return value

    def table(self, name: str) -> _Reader:
        self.seen.add(name)
        raw = self.raw.get(name, {})
        if not isinstance(raw, dict):
            self.fail(name, "expected a table")
            raw = {}
        return _Reader(raw, self.key(name), self.problems)

    def done(self) -> None:
        for name in sorted(set(self.raw) - self.seen):
            self.fail(name, "unknown key")


def _positive(value: float) -> str | None:
    return None if value > 0 else "expected a positive number"


def _segment_mb_check(value: int) -> str | None:
    return None if 0 < value <= 1024 else "expected 1 to 1024 (an index position is 32 bits)"


def _one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"expected one of {', '.join(choices)}"


def parse_host_port(text: str) -> HostPort:
    """Parse `host:port` or `[v6]:port`; raise ValueError when it is neither."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(text)
    return HostPort(host, int(port))


def _host_port_check(text: str) -> str | None:
    try:
        parse_host_port(text)
    except ValueError:
        return "expected host:port"
    return None


def _public_url_check(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        return "expected an http(s) base URL without query"
    return None


def _key_id_check(text: str) -> str | None:
    ok = 0 < len(text) <= 16 and text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    return None if ok else "expected 1-16 characters of [A-Za-z0-9_-]"


def _read_edge(r: _Reader) -> EdgeConfig:
    d = EdgeConfig()
    listen = r.get("listen", str, str(d.listen), _host_port_check)
    edge = EdgeConfig(
        listen=parse_host_port(listen),
        public_url=r.get("public_url", str, d.public_url, _public_url_check).rstrip("/"),
        trust_forwarded=r.get("trust_forwarded", bool, d.trust_forwarded),
        max_body_bytes=r.get("max_body_bytes", int, d.max_body_bytes, _positive),
        access_log=r.get("access_log", bool, d.access_log),
        shutdown_timeout_s=r.get("shutdown_timeout_s", float, d.shutdown_timeout_s, _positive),
    )
    r.done()
    return edge


def _read_kafka(r: _Reader) -> KafkaConfig:
    d = KafkaConfig()
    servers_text = r.get("bootstrap_servers", str, "", lambda s: _all_host_ports(s))
    password = r.optional("sasl_password", str)
    kafka = KafkaConfig(
        bootstrap_servers=tuple(parse_host_port(s) for s in servers_text.split(",") if s.strip()),
        client_id=r.get("client_id", str, d.client_id),
        partitions=r.get("partitions", int, d.partitions, _positive),
        replication_factor=r.get("replication_factor", int, d.replication_factor, _positive),
        linger_ms=r.get("linger_ms", int, d.linger_ms, lambda v: None if v >= 0 else "expected >= 0"),
        append_budget_ms=r.get("append_budget_ms", int, d.append_budget_ms, _positive),
        security_protocol=r.get(
            "security_protocol", str, d.security_protocol, _one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
        ),
        sasl_mechanism=r.optional("sasl_mechanism", str),
        sasl_username=r.optional("sasl_username", str),
        sasl_password=Secret(password.encode()) if password else None,
        ssl_cafile=r.optional("ssl_cafile", str),
        ssl_certfile=r.optional("ssl_certfile", str),
        ssl_keyfile=r.optional("ssl_keyfile", str),
        idempotence=r.get("idempotence", bool, d.idempotence),
        request_timeout_ms=r.get("request_timeout_ms", int, d.request_timeout_ms, _positive),
        retry_backoff_ms=r.get("retry_backoff_ms", int, d.retry_backoff_ms, _positive),
        connect_timeout_ms=r.get("connect_timeout_ms", int, d.connect_timeout_ms, _positive),
        max_batch_bytes=r.get("max_batch_bytes", int, d.max_batch_bytes, _positive),
        spool_dir=Path(r.get("spool_dir", str, str(d.spool_dir))),
        spool_max_mb=r.get("spool_max_mb", int, d.spool_max_mb, _positive),
        group_session_timeout_ms=r.get("group_session_timeout_ms", int, d.group_session_timeout_ms, _positive),
        group_heartbeat_interval_ms=r.get("group_heartbeat_interval_ms", int, d.group_heartbeat_interval_ms, _positive),
    )
    r.done()
    return kafka


def _all_host_ports(text: str) -> str | None:
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts or any(_host_port_check(p) for p in parts):
        return "expected host:port[,host:port...]"
    return None


def _read_log(r: _Reader) -> LogConfig:
    d = LogConfig()
    backend = r.get("backend", str, d.backend, _one_of("embedded", "kafka"))
    embedded_r = r.table("embedded")
    embedded = EmbeddedLogConfig(
        path=Path(embedded_r.get("path", str, str(d.embedded.path))),
        max_batch=embedded_r.get("max_batch", int, d.embedded.max_batch, _positive),
        segment_mb=embedded_r.get("segment_mb", int, d.embedded.segment_mb, _segment_mb_check),
        retention_hours=embedded_r.get("retention_hours", int, d.embedded.retention_hours, _positive),
        retention_mb=embedded_r.get("retention_mb", int, d.embedded.retention_mb, _positive),
    )
    embedded_r.done()
    kafka = _read_kafka(r.table("kafka"))
    if backend == "kafka" and not kafka.bootstrap_servers:
        r.fail("kafka.bootstrap_servers", f"required when log.backend is kafka (or set {ENV_KAFKA_BOOTSTRAP})")
    log = LogConfig(
        backend=backend,
        topic_prefix=r.get("topic_prefix", str, d.topic_prefix, _topic_prefix_check),
        embedded=embedded,
        kafka=kafka,
    )
    r.done()
    return log


def _topic_prefix_check(text: str) -> str | None:
    ok = 0 < len(text) <= 100 and all(c.isalnum() or c in "._-" for c in text)
    return None if ok else "expected a Kafka topic name prefix"


def _read_tokens(r: _Reader) -> TokensConfig:
    d = TokensConfig()
    keys = []
    raw_keys = r.get("keys", list, [])
    for i, raw in enumerate(raw_keys):
        kr = _Reader(raw if isinstance(raw, dict) else {}, f"{r.key('keys')}[{i}]", r.problems)
        key_id = kr.get("id", str, "", _key_id_check)
        file = kr.optional("file", str)
        env = kr.optional("env", str)
        if key_id == "" and "id" not in kr.raw:
            kr.fail("id", "required")
        if (file is None) == (env is None):
            kr.fail("file", "give exactly one of file or env")
        keys.append(KeyConfig(key_id, Path(file) if file else None, env, kr.get("retired", bool, False)))
        kr.done()
    signing = r.optional("signing_key", str)
    active = [k.id for k in keys if not k.retired]
    if keys and signing not in active:
        r.fail("signing_key", f"expected the id of a key that is not retired ({', '.join(active) or 'none'})")
    tokens = TokensConfig(ttl_s=r.get("ttl_s", int, d.ttl_s, _positive), signing_key=signing, keys=tuple(keys))
    r.done()
    return tokens


def _read_members(r: _Reader) -> dict[int, MemberConfig]:
    members = {}
    for name in list(r.raw):
        mr = r.table(name)
        if not name.isdigit():
            r.fail(name, "expected a numeric member id")
            continue
        secret = mr.optional("secret", str)
        secret_env = mr.optional("secret_env", str)
        if secret_env is not None:
            secret = os.environ.get(secret_env)
            if secret is None:
                mr.fail("secret_env", f"environment variable {secret_env} is not set")
        members[int(name)] = MemberConfig(
            member_id=int(name),
            click_uri=mr.get("click_uri", str, "", _click_uri_check),
            secret=Secret(secret.encode()) if secret else None,
            timeout_s=mr.get("timeout_s", float, 2.0, _positive),
            concurrency=mr.get("concurrency", int, 32, _positive),
            enabled=mr.get("enabled", bool, True),
            allow_private=mr.get("allow_private", bool, False),
        )
        if "click_uri" not in mr.raw:
            mr.fail("click_uri", "required")
        mr.done()
    return members


def _click_uri_check(text: str) -> str | None:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "expected an http(s) URL"
    return None


def _read_notifier(r: _Reader) -> NotifierConfig:
    d = NotifierConfig()
    notifier = NotifierConfig(
        group=r.get("group", str, d.group, lambda s: None if s else "expected a group name"),
        click_window_s=r.get("click_window_s", float, d.click_window_s, _positive),
        impression_window_s=r.get("impression_window_s", float, d.impression_window_s, _positive),
        dedup_impressions=r.get("dedup_impressions", bool, d.dedup_impressions),
        max_in_flight=r.get("max_in_flight", int, d.max_in_flight, _positive),
        queue_per_slot=r.get("queue_per_slot", int, d.queue_per_slot, _positive),
        slot_wait_s=r.get("slot_wait_s", float, d.slot_wait_s, _positive),
        retry_base_s=r.get("retry_base_s", float, d.retry_base_s, _positive),
        retry_max_delay_s=r.get("retry_max_delay_s", float, d.retry_max_delay_s, _positive),
        retry_horizon_s=r.get("retry_horizon_s", float, d.retry_horizon_s, _positive),
        max_parked=r.get("max_parked", int, d.max_parked, _positive),
        breaker_failures=r.get("breaker_failures", int, d.breaker_failures, _positive),
        breaker_cooldown_s=r.get("breaker_cooldown_s", float, d.breaker_cooldown_s, _positive),
        response_cap_bytes=r.get("response_cap_bytes", int, d.response_cap_bytes, _positive),
        crawler_cache_size=r.get("crawler_cache_size", int, d.crawler_cache_size, _positive),
        commit_interval_s=r.get("commit_interval_s", float, d.commit_interval_s, _positive),
    )
    r.done()
    return notifier


def _read_campaigns(r: _Reader, members: Mapping[int, MemberConfig]) -> dict[int, CampaignConfig]:
    campaigns = {}
    for name in list(r.raw):
        cr = r.table(name)
        if not name.isdigit():
            r.fail(name, "expected a numeric campaign id")
            continue
        member_id = cr.get("member_id", int, 0, _positive)
        placements = cr.get("placements", list, [])
        if not placements or not all(isinstance(p, str) and p for p in placements):
            cr.fail("placements", "expected a non-empty list of placement names")
        campaigns[int(name)] = CampaignConfig(int(name), member_id, tuple(str(p) for p in placements))
        cr.done()
    return campaigns


def _read_api_keys(r: _Reader) -> tuple[ApiKeyConfig, ...]:
    keys = []
    for name in list(r.raw):
        kr = r.table(name)
        digest = kr.get("sha256", str, "", _sha256_check)
        rate = kr.get("rate_per_s", float, 50.0, _positive)
        keys.append(ApiKeyConfig(name, bytes.fromhex(digest) if digest else b"", rate))
        if "sha256" not in kr.raw:
            kr.fail("sha256", "required")
        kr.done()
    return tuple(keys)


def _sha256_check(text: str) -> str | None:
    ok = len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)
    return None if ok else "expected 64 hex digits"


def from_mapping(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> Config:
    """Build a validated `Config` from parsed TOML plus environment overrides."""
    raw = _apply_env(raw, os.environ if env is None else env)
    problems: list[str] = []
    root = _Reader(raw, "", problems)
    data_dir = Path(root.get("data_dir", str, "var"))
    members = _read_members(root.table("members"))
    config = Config(
        data_dir=data_dir,
        edge=_read_edge(root.table("edge")),
        log=_read_log(root.table("log")),
        tokens=_read_tokens(root.table("tokens")),
        members=members,
        campaigns=_read_campaigns(root.table("campaigns"), members),
        api_keys=_read_api_keys(root.table("api_keys")),
        notifier=_read_notifier(root.table("notifier")),
    )
    root.done()
    if problems:
        raise ConfigError(problems)
    return config


def _apply_env(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = _deep_copy(raw)
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            *parents, leaf = dotted.split(".")
            table = merged
            for part in parents:
                table = table.setdefault(part, {}) if isinstance(table.get(part, {}), dict) else {}
            table[leaf] = env[var]
    if env.get(ENV_KAFKA_BOOTSTRAP):
        merged.setdefault("log", {})["backend"] = "kafka"
    return merged


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}


def load(path: Path | str, *, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a TOML configuration file (relative paths are taken from the working directory)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: {exc}"]) from None
    return replace(from_mapping(raw, env=env), source=path)
