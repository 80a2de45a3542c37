"""Configuration: every setting declared once, as an annotated field of a frozen dataclass.

A field's type carries its check (`clickbus.settings.values`), its default is the field default, and its
`Doc` gives the one-line meaning and any environment override. From these declarations come the parsing
(pydantic, which reports every problem at once by dotted key: `edge.listen: expected host:port, got 'x'`),
the environment overrides (`ENV_OVERRIDES`) and the commented `conf/clickbus.toml` (`clickbus config
defaults`). Checks that span keys sit beside the table they check.
"""

from __future__ import annotations

import base64
import binascii
import functools
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pydantic
from pydantic import AfterValidator, ConfigDict, PlainValidator, TypeAdapter, ValidationError

from clickbus.errors import ConfigError
from clickbus.settings.declare import Doc, Tables, env_overrides
from clickbus.settings.problems import problems
from clickbus.settings.values import (
    CIDR,
    Address,
    Addresses,
    FilePath,
    Flag,
    HostPort,
    Int,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Secret,
    SecretText,
    Sha256,
    Text,
    base_url,
    check,
    http_url,
    invalid,
    one_of,
    parse_host_port,
)

__all__ = [
    "ENV_OVERRIDES",
    "ApiKeyConfig",
    "CampaignConfig",
    "Config",
    "EdgeConfig",
    "EmbeddedLogConfig",
    "HostPort",
    "InsertKeyConfig",
    "KafkaConfig",
    "KeyConfig",
    "LogConfig",
    "MemberConfig",
    "NotifierConfig",
    "ReportsConfig",
    "Secret",
    "TokensConfig",
    "from_mapping",
    "load",
    "parse_host_port",
]

ENV_LISTEN = "CLICKBUS_LISTEN"
ENV_ADMIN_LISTEN = "CLICKBUS_ADMIN_LISTEN"
ENV_PUBLIC_URL = "CLICKBUS_PUBLIC_URL"
ENV_DATA_DIR = "CLICKBUS_DATA_DIR"
ENV_KAFKA_BOOTSTRAP = "CLICKBUS_KAFKA_BOOTSTRAP"
ENV_REPORTS_DSN = "CLICKBUS_REPORTS_DSN"
_PUBLIC = HostPort("127.0.0.1", 8080)
_INTERNAL = HostPort("127.0.0.1", 8081)


def _key_id(text: str) -> str | None:
    ok = 0 < len(text) <= 16 and text.isascii() and all(c.isalnum() or c in "-_" for c in text)
    return None if ok else "expected 1-16 characters of [A-Za-z0-9_-]"


def _topic_prefix(text: str) -> str | None:
    ok = 0 < len(text) <= 100 and all(c.isalnum() or c in "._-" for c in text)
    return None if ok else "expected a Kafka topic name prefix"


def _segment_mb(value: int) -> str | None:
    return None if value <= 1024 else "expected at most 1024 (an index position is 32 bits)"


def _host_names(names: tuple[str, ...]) -> str | None:
    ok = all(0 < len(n) <= 253 and n.isascii() and all(c.isalnum() or c in ".-" for c in n) for n in names)
    return None if ok else "expected host names (letters, digits, dots, hyphens), without ports"


def _placements(names: tuple[str, ...]) -> str | None:
    return None if names and all(names) else "expected a non-empty list of placement names"


@dataclass(frozen=True, slots=True)
class KeyConfig:
    """One token signing key: its id and where its material lives (exactly one of file or env)."""

    id: Annotated[Text, check(_key_id), Doc("key id, carried in every token it signs", example="k1")]
    file: Annotated[
        FilePath | None, Doc("file holding base64url key material (>= 32 bytes)", example="/etc/clickbus/k1.key")
    ] = None
    env: Annotated[Text | None, Doc("or: environment variable holding it", example="CLICKBUS_TOKEN_KEY_K1")] = None
    retired: Annotated[Flag, Doc("tokens signed with a retired key are refused")] = False


def _one_source(key: KeyConfig) -> KeyConfig:
    if (key.file is None) == (key.env is None):
        raise invalid("give exactly one of file or env", at="file")
    return key


@dataclass(frozen=True, slots=True)
class TokensConfig:
    """Signed tracking URLs. With no [[tokens.keys]], a key is generated into data_dir/signing.key on first start."""

    ttl_s: Annotated[PositiveInt, Doc("token lifetime in seconds (30 days)")] = 30 * 24 * 3600
    signing_key: Annotated[Text | None, Doc("id of the key that signs new tokens", example="k1")] = None
    keys: Annotated[
        tuple[Annotated[KeyConfig, AfterValidator(_one_source)], ...],
        Doc("signing keys, several for rotation (production: configure them; every edge must share them)"),
    ] = ()


def _signing_key_active(tokens: TokensConfig) -> TokensConfig:
    active = [k.id for k in tokens.keys if not k.retired]
    if tokens.keys and tokens.signing_key not in active:
        names = ", ".join(active) or "none"
        raise invalid(f"expected the id of a key that is not retired ({names})", at="signing_key")
    return tokens


@dataclass(frozen=True, slots=True)
class EdgeConfig:
    """The HTTP edge: its listeners, limits and timeouts."""

    listen: Annotated[Address, Doc("public listener: clicks, beacons, health", env=ENV_LISTEN)] = _PUBLIC
    public_url: Annotated[
        Text,
        check(base_url),
        AfterValidator(lambda url: url.rstrip("/")),
        Doc("base of every tracking URL: what browsers can reach", env=ENV_PUBLIC_URL),
    ] = "http://127.0.0.1:8080"
    trust_forwarded: Annotated[Flag, Doc("believe X-Forwarded-For (only behind your own load balancer)")] = False
    max_body_bytes: Annotated[PositiveInt, Doc("request bodies above this get 413")] = 64 * 1024
    access_log: Annotated[Flag, Doc("aiohttp's access log")] = False
    shutdown_timeout_s: Annotated[
        PositiveFloat, Doc("on SIGTERM, /readyz turns 503 and requests finish and the log flushes within this")
    ] = 10.0
    admin_listen: Annotated[Address, Doc("internal listener: insertion, metrics, OpenAPI", env=ENV_ADMIN_LISTEN)] = (
        _INTERNAL
    )
    admin_hosts: Annotated[
        tuple[Text, ...],
        check(_host_names),
        AfterValidator(lambda names: tuple(n.lower() for n in names)),
        Doc("more Host names the internal listener answers (it refuses any other: DNS rebinding)"),
    ] = ()
    header_timeout_s: Annotated[PositiveFloat, Doc("a client must send its request headers within this")] = 10.0
    body_timeout_s: Annotated[PositiveFloat, Doc("a client must send its request body within this")] = 10.0
    keepalive_timeout_s: Annotated[PositiveFloat, Doc("idle keep-alive connections close after this")] = 15.0
    trusted_proxies: Annotated[
        tuple[CIDR, ...], Doc("networks whose X-Forwarded-For is believed, with trust_forwarded (CIDR list)")
    ] = ()
    max_url_bytes: Annotated[PositiveInt, Doc("longest click/impression URL insertion will mint")] = 4096
    max_text_chars: Annotated[PositiveInt, Doc("longest free-text field a beacon/server click may record")] = 1024
    allow_private_landings: Annotated[
        Flag, Doc("sign and follow loopback, private and link-local landings, and localhost (development only)")
    ] = False
    max_head_bytes: Annotated[
        PositiveInt, Doc("a request head (request line and headers) above this in all gets 431")
    ] = 32 * 1024


_WILDCARDS = frozenset({"0.0.0.0", "::"})


def _listeners_apart(edge: EdgeConfig) -> EdgeConfig:
    public, admin = edge.listen, edge.admin_listen
    hosts = {public.host, admin.host}
    # a wildcard host takes its port on every address, the other listener's included
    if public.port == admin.port and (len(hosts) == 1 or hosts & _WILDCARDS):
        message = f"{admin} overlaps edge.listen ({public}): the two listeners need different addresses"
        raise invalid(message, at="admin_listen")
    return edge


@dataclass(frozen=True, slots=True)
class EmbeddedLogConfig:
    """The embedded log, on this machine's disk."""

    path: Annotated[FilePath, Doc("a directory of partitions, inside data_dir")] = Path("log")
    max_batch: Annotated[PositiveInt, Doc("appends written together in one write and fdatasync, at most")] = 1024
    segment_mb: Annotated[
        PositiveInt, check(_segment_mb), Doc("a partition's active segment rolls over at this size")
    ] = 64
    retention_hours: Annotated[PositiveInt, Doc("closed segments last written longer ago are deleted")] = 168
    retention_mb: Annotated[PositiveInt, Doc("the oldest closed segments go while a partition holds more")] = 10240
    retention_check_s: Annotated[PositiveFloat, Doc("how often retention looks for segments to delete")] = 60.0


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """The Kafka log: Apache Kafka or any Kafka-protocol broker (see conf/clickbus.kafka.toml)."""

    bootstrap_servers: Annotated[
        Addresses,
        Doc(
            "host:port[,host:port...]; naming them in the environment also selects the kafka backend",
            env=ENV_KAFKA_BOOTSTRAP,
            example="kafka-1:9092,kafka-2:9092",
        ),
    ] = ()
    client_id: Annotated[Text, Doc("client id the brokers see")] = "clickbus"
    partitions: Annotated[PositiveInt, Doc("partitions of topics created at start")] = 12
    replication_factor: Annotated[PositiveInt, Doc("replicas of topics created at start")] = 1
    linger_ms: Annotated[NonNegativeInt, Doc("how long the producer waits to fill a batch")] = 5
    append_budget_ms: Annotated[PositiveInt, Doc("past this, an unacknowledged click is spooled to disk")] = 50
    security_protocol: Annotated[
        Text,
        one_of("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"),
        Doc("PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
    ] = "PLAINTEXT"
    sasl_mechanism: Annotated[Text | None, Doc("PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", example="PLAIN")] = None
    sasl_username: Annotated[Text | None, Doc("SASL user", example="clickbus")] = None
    sasl_password: Annotated[SecretText | None, Doc("SASL password (never logged)", example="change-me")] = None
    ssl_cafile: Annotated[Text | None, Doc("CA bundle for the brokers", example="/etc/clickbus/ca.pem")] = None
    ssl_certfile: Annotated[Text | None, Doc("client certificate", example="/etc/clickbus/client.pem")] = None
    ssl_keyfile: Annotated[Text | None, Doc("client key", example="/etc/clickbus/client.key")] = None
    # Kafka >= 0.11 supports it; off only for brokers that refuse InitProducerId v0 (Tansu 0.6)
    idempotence: Annotated[Flag, Doc("idempotent producer (off only for brokers that refuse it)")] = True
    request_timeout_ms: Annotated[PositiveInt, Doc("one produce, metadata or commit request")] = 10_000
    retry_backoff_ms: Annotated[PositiveInt, Doc("first retry delay of the spool shipper (doubles up to 5 s)")] = 200
    connect_timeout_ms: Annotated[PositiveInt, Doc("connecting and checking topics")] = 5_000
    max_batch_bytes: Annotated[PositiveInt, Doc("producer batch size per partition")] = 256 * 1024
    spool_dir: Annotated[FilePath, Doc("where appends wait while Kafka is down (inside data_dir unless absolute)")] = (
        Path("spool")
    )
    spool_max_mb: Annotated[PositiveInt, Doc("past this, clicks are refused with 503")] = 1024
    group_session_timeout_ms: Annotated[PositiveInt, Doc("a silent group member loses its partitions")] = 10_000
    group_heartbeat_interval_ms: Annotated[PositiveInt, Doc("group member heartbeat")] = 3_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    """The log: durable topics, embedded or on Kafka."""

    backend: Annotated[Text, one_of("embedded", "kafka"), Doc("embedded (this machine) or kafka")] = "embedded"
    topic_prefix: Annotated[
        Text, check(_topic_prefix), Doc("topics are <prefix>.clicks, .impressions, .deliveries, .dlq")
    ] = "clickbus"
    embedded: EmbeddedLogConfig = EmbeddedLogConfig()
    kafka: KafkaConfig = KafkaConfig()
    stop_timeout_s: Annotated[PositiveFloat, Doc("a log or consumer stops within this")] = 10.0


def _kafka_has_servers(log: LogConfig) -> LogConfig:
    if log.backend == "kafka" and not log.kafka.bootstrap_servers:
        message = f"required when log.backend is kafka (or set {ENV_KAFKA_BOOTSTRAP})"
        raise invalid(message, at="kafka.bootstrap_servers")
    return log


@dataclass(frozen=True, slots=True)
class MemberConfig:
    """A member and its bidder's click handler."""

    member_id: Int
    click_uri: Annotated[Text, check(http_url), Doc("bidder's click handler", example="https://bidder.example/click")]
    secret: Annotated[SecretText | None, Doc("Standard Webhooks secret, whsec_...", example="whsec_...")] = None
    timeout_s: Annotated[PositiveFloat, Doc("one delivery attempt")] = 2.0
    concurrency: Annotated[PositiveInt, Doc("deliveries in flight to this bidder")] = 32
    enabled: Annotated[Flag, Doc("deliver to this bidder")] = True
    allow_private: Annotated[Flag, Doc("allow a loopback or private click_uri (tests only)")] = False
    secret_env: Annotated[
        Text | None, Doc("or: environment variable holding the secret", example="CLICKBUS_MEMBER_13_SECRET")
    ] = None


WEBHOOK_SECRET_PREFIX = "whsec_"


def _whsec_problem(secret: bytes) -> str | None:
    """What keeps `secret` from being a Standard Webhooks secret (`whsec_` + base64 of the key), or None."""
    prefix = WEBHOOK_SECRET_PREFIX.encode()
    if not secret.startswith(prefix):
        return f"expected a Standard Webhooks secret, {WEBHOOK_SECRET_PREFIX} followed by base64"
    encoded = secret[len(prefix) :]
    try:
        key = base64.b64decode(encoded + b"=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        key = b""
    return None if key else f"expected {WEBHOOK_SECRET_PREFIX} followed by base64 of the key"


def _webhook_secret(member: MemberConfig) -> MemberConfig:
    """The secret from `secret_env` if named; either way one the bidder's Standard Webhooks library verifies with."""
    if member.secret_env is not None:
        secret = os.environ.get(member.secret_env)
        if not secret:
            raise invalid(f"environment variable {member.secret_env} is not set", at="secret_env")
        member = replace(member, secret=Secret(secret.encode()))
    problem = None if member.secret is None else _whsec_problem(member.secret.value)
    if problem:  # every callback would fail the bidder's check (401): refuse it now, never showing the value
        raise invalid(problem, at="secret_env" if member.secret_env is not None else "secret")
    return member


@dataclass(frozen=True, slots=True)
class NotifierConfig:
    """The notifier: consumer group, dedup windows, retry schedule, circuit breaker, limits."""

    group: Annotated[Text, check(lambda s: None if s else "expected a group name"), Doc("consumer group")] = (
        "clickbus-notifier"
    )
    click_window_s: Annotated[PositiveFloat, Doc("dedup window for clicks")] = 3600.0
    impression_window_s: Annotated[PositiveFloat, Doc("dedup window for impressions")] = 60.0
    dedup_impressions: Annotated[Flag, Doc("also read impressions, recording invalid ones")] = True
    max_in_flight: Annotated[PositiveInt, Doc("clicks being processed at once")] = 1024
    queue_per_slot: Annotated[PositiveInt, Doc("clicks that may wait per concurrency slot before parking")] = 16
    slot_wait_s: Annotated[PositiveFloat, Doc("park waiting clicks of a bidder silent for this long")] = 0.25
    retry_base_s: Annotated[PositiveFloat, Doc("first retry delay")] = 1.0
    retry_max_delay_s: Annotated[PositiveFloat, Doc("longest retry delay")] = 3600.0
    retry_horizon_s: Annotated[PositiveFloat, Doc("retries stop after this; the click is dead-lettered")] = 86400.0
    max_parked: Annotated[PositiveInt, Doc("parked retries held in memory")] = 20000
    breaker_failures: Annotated[PositiveInt, Doc("failures in a row that open a bidder's breaker")] = 5
    breaker_cooldown_s: Annotated[PositiveFloat, Doc("an open breaker tries again after this")] = 30.0
    response_cap_bytes: Annotated[PositiveInt, Doc("bytes of a bidder's answer read, at most")] = 65536
    crawler_cache_size: Annotated[PositiveInt, Doc("user agents remembered by the crawler check")] = 10000
    activity_max_agents: Annotated[
        PositiveInt, Doc("distinct user agents valid from one address on one ad within the click window")
    ] = 3
    activity_max_clicks: Annotated[
        PositiveInt, Doc("clicks valid from one address on one ad within the click window")
    ] = 10
    commit_interval_s: Annotated[PositiveFloat, Doc("how often settled offsets are committed")] = 0.2


@dataclass(frozen=True, slots=True)
class ReportsConfig:
    """Reports: where the hourly rows live, how long they are kept, and the reporting consumer group."""

    enabled: Annotated[Flag, Doc("count verdicts into reports where the notifier runs (clickbus run)")] = True
    store: Annotated[
        Text, one_of("sqlite", "postgres"), Doc("where the rows live: sqlite (a file in data_dir) or postgres")
    ] = "sqlite"
    path: Annotated[FilePath, Doc("the SQLite file, inside data_dir")] = Path("reports.sqlite3")
    postgres_dsn: Annotated[
        SecretText | None,
        Doc(
            "PostgreSQL connection URI (never logged)", env=ENV_REPORTS_DSN, example="postgresql://clickbus@db/reports"
        ),
    ] = None
    group: Annotated[Text, check(lambda s: None if s else "expected a group name"), Doc("consumer group")] = (
        "clickbus-reports"
    )
    retention_months: Annotated[PositiveInt, Doc("rows older than this many months are deleted")] = 13
    hourly_days: Annotated[PositiveInt, Doc("hourly rows older than this are folded into daily rows")] = 35
    dedup_window_s: Annotated[
        PositiveFloat, Doc("copies of a record logged within this of each other count once (keys kept 1-2x this)")
    ] = 3600.0
    batch_max: Annotated[PositiveInt, Doc("records counted in one store transaction, at most")] = 5000
    maintain_every_s: Annotated[PositiveFloat, Doc("how often old rows are folded and deleted")] = 600.0


def _postgres_has_dsn(reports: ReportsConfig) -> ReportsConfig:
    if reports.store == "postgres" and reports.postgres_dsn is None:
        raise invalid(f"required when reports.store is postgres (or set {ENV_REPORTS_DSN})", at="postgres_dsn")
    return reports


@dataclass(frozen=True, slots=True)
class CampaignConfig:
    """A campaign for server-side clicks: its member and placements."""

    campaign_id: Int
    member_id: Annotated[PositiveInt, Doc("the member whose bidder is notified", example=13)]
    placements: Annotated[
        tuple[Text, ...],
        check(_placements),
        pydantic.Field(validate_default=True),  # a campaign without placements is reported, not defaulted
        Doc("placement names", example=["header_banner", "article_inline"]),
    ] = ()


@dataclass(frozen=True, slots=True)
class ApiKeyConfig:
    """A publisher's server-side click API key, stored as its SHA-256 only (`clickbus apikey new`)."""

    name: Text
    sha256: Annotated[Sha256, Doc("hex SHA-256 of the key", example="<64 hex digits>")] = field(repr=False)
    rate_per_s: Annotated[PositiveFloat, Doc("requests per second")] = 50.0


@dataclass(frozen=True, slots=True)
class InsertKeyConfig:
    """An ad server's key for insertion on the public listener, stored as its SHA-256 only."""

    name: Text
    sha256: Annotated[Sha256, Doc("hex SHA-256 of the key", example="<64 hex digits>")] = field(repr=False)
    members: Annotated[tuple[PositiveInt, ...], Doc("members it may insert for (empty: any)", example=[13])] = ()


def _internal(value: object) -> Any:
    raise invalid("unknown key")


@dataclass(frozen=True, slots=True)
class Config:
    """The whole, validated configuration of one clickbus process."""

    # extra keys are refused in every table below this one; pydantic reports each
    __pydantic_config__: ClassVar[ConfigDict] = ConfigDict(extra="forbid")

    data_dir: Annotated[FilePath, Doc("the log, spool and generated signing key live here", env=ENV_DATA_DIR)] = Path(
        "var"
    )
    edge: Annotated[EdgeConfig, AfterValidator(_listeners_apart)] = EdgeConfig()
    log: Annotated[LogConfig, AfterValidator(_kafka_has_servers)] = LogConfig()
    tokens: Annotated[TokensConfig, AfterValidator(_signing_key_active)] = TokensConfig()
    members: Annotated[
        Mapping[int, Annotated[MemberConfig, AfterValidator(_webhook_secret)]],
        Tables("member_id", numbered="member id"),
        Doc("members and their bidders' click handlers (see README, Notifier)", example="13"),
    ] = field(default_factory=dict)
    campaigns: Annotated[
        Mapping[int, CampaignConfig],
        Tables("campaign_id", numbered="campaign id"),
        Doc("campaigns for server-side clicks (see README, Publisher APIs)", example="1"),
    ] = field(default_factory=dict)
    api_keys: Annotated[
        tuple[ApiKeyConfig, ...],
        Tables("name"),
        Doc("server-side click API keys, as SHA-256 (`clickbus apikey new`)", example="publisher-a"),
    ] = ()
    source: Annotated[Path | None, PlainValidator(_internal)] = None  # the file read, set by `load`
    notifier: NotifierConfig = NotifierConfig()
    reports: Annotated[ReportsConfig, AfterValidator(_postgres_has_dsn)] = ReportsConfig()
    insert_keys: Annotated[
        tuple[InsertKeyConfig, ...],
        Tables("name"),
        Doc("keys that may call insertion on the public listener, as SHA-256", example="ad-server"),
    ] = ()

    @property
    def log_path(self) -> Path:
        return self.data_dir / self.log.embedded.path

    @property
    def reports_path(self) -> Path:
        return self.data_dir / self.reports.path


ENV_OVERRIDES = env_overrides(Config)


@functools.cache
def _validator() -> TypeAdapter[Config]:
    return TypeAdapter(Config)  # built on first use: about 30 ms, paid only by processes that read configuration


def from_mapping(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None) -> Config:
    """Build a validated `Config` from parsed TOML plus environment overrides."""
    raw = _apply_env(raw, os.environ if env is None else env)
    try:
        return _validator().validate_python(raw)
    except ValidationError as exc:
        raise ConfigError(problems(exc)) from None


def _apply_env(raw: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    merged: dict[str, Any] = _deep_copy(raw)
    for var, dotted in ENV_OVERRIDES.items():
        if env.get(var):
            *parents, leaf = dotted.split(".")
            table = merged
            for part in parents:
                table = table.setdefault(part, {}) if isinstance(table.get(part, {}), dict) else {}
            table[leaf] = env[var]
    if env.get(ENV_KAFKA_BOOTSTRAP):  # naming brokers in the environment is how a deployment picks Kafka
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
