"""The `clickbus` command line: run, notifier, reporter, report, status, tail, dlq, sign, keygen, apikey, config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import orjson

from clickbus import __version__, datadir, runtime
from clickbus import config as configuration
from clickbus.config import Config
from clickbus.errors import AddressInUse, CannotStart, ClickbusError, ConfigError
from clickbus.log.port import Entry, Log, Topic
from clickbus.metrics import default_metrics
from clickbus.private_files import restrict_umask, warn_if_shared
from clickbus.run_lock import hold_data_dir
from clickbus.worker import ENV_WORKER

logger = logging.getLogger("clickbus.cli")

DEFAULT_CONFIG = Path("conf/clickbus.toml")
WORKERS_PER_CPU = 4
Command = Callable[[argparse.Namespace], int]


def _load(args: argparse.Namespace, *, defaults_ok: bool = False) -> Config:
    """The configuration `--config` names; built-in defaults for a missing default file only if `defaults_ok`."""
    path = Path(args.config)
    if path == DEFAULT_CONFIG and not path.exists():
        # Elsewhere defaults would mislead: `sign` would mint URLs with a key of its own, which the service refuses.
        if defaults_ok:
            return configuration.from_mapping({})
        raise ConfigError([f"{path} not found in {Path.cwd()}: run clickbus where conf/ is, or give --config FILE"])
    return configuration.load(path)


def _say_configuration(config: Config) -> None:
    """Log which configuration `run` uses: the file, or built-in defaults when there is none."""
    if config.source is None:
        where = f"{DEFAULT_CONFIG} not found in {Path.cwd()}"
        logger.warning("configuration: built-in defaults (%s; give --config FILE)", where, extra={"config": None})
    else:
        logger.info("configuration: %s", config.source.resolve(), extra={"config": str(config.source.resolve())})


def cmd_run(args: argparse.Namespace) -> int:
    """Serve the edge on the configured address (`--workers N`: N processes sharing it)."""
    from clickbus import logging_setup, supervisor
    from clickbus.edge import sockets

    logging_setup.configure(args.log_level)
    config = _load(args, defaults_ok=True)
    datadir.prepare(config.data_dir)
    if args.worker:
        _hold_supervisor(config.edge.shutdown_timeout_s + supervisor.GRACE_S)
        runtime.share_metrics(config, first=False)
        return runtime.serve_edge(config, announce=False, notifier=False, listeners=sockets.inherited())
    _check_workers(args.workers, force=args.force)
    warn_if_shared(config.data_dir)
    hold_data_dir(config.data_dir)  # the lock's fd stays open, and the lock held, until this process exits
    # before anything starts: a port in use stops the run here; the sockets live as long as this process
    listeners = sockets.open_listeners(config.edge, args.workers)
    _say_configuration(config)  # once it will run: a refusal above is its one line
    runtime.share_metrics(config, first=True)
    _migrate_legacy_log(config)
    config_args = ("--config", args.config, "--log-level", args.log_level)
    extras = [] if args.no_notifier else supervisor.extra_children(config_args, reports=config.reports.enabled)
    if args.workers == 1:  # one process: the notifier runs inside it
        return runtime.serve_edge(config, announce=True, notifier=not args.no_notifier, listeners=listeners[0])
    worker_argv = supervisor.clickbus_argv("run", "--worker", *config_args)
    workers = [
        supervisor.ChildSpec(f"worker-{i}", worker_argv, {ENV_WORKER: str(i), **own.env()}, own.fds(), listens=True)
        for i, own in enumerate(listeners)
    ]

    def listening() -> None:  # once every worker listens: on Kafka they connect to the brokers first
        print(
            f"clickbus listening on {config.edge.listen} (admin {config.edge.admin_listen}), "
            f"public URL {config.edge.public_url} ({args.workers} workers)",
            flush=True,
        )

    timeout_s = config.edge.shutdown_timeout_s
    return supervisor.Supervisor([*workers, *extras], os.environ, timeout_s, on_listening=listening).run()


def _check_workers(workers: int, *, force: bool) -> None:
    """Refuse more than `WORKERS_PER_CPU` workers per CPU without `--force` (1000 forked until the OOM killer came)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers > WORKERS_PER_CPU * cpus and not force:
        raise CannotStart(
            f"--workers {workers} is more than {WORKERS_PER_CPU} per CPU ({WORKERS_PER_CPU * cpus} on {cpus}); "
            "add --force to start them anyway"
        )


def _hold_supervisor(stop_within_s: float) -> None:
    """In a child of `clickbus run --workers N`: stop when the supervisor dies."""
    from clickbus import lifeline

    lifeline.hold(stop_within_s)


def _migrate_legacy_log(config: Config) -> None:
    """Ship the unread records of an old SQLite log (before #13) into the segment log, once."""
    from clickbus.log.migrate import legacy_log, migrate_into
    from clickbus.notifier.dlq import replay_group

    old = legacy_log(config.data_dir, config.log_path) if config.log.backend == "embedded" else None
    if old is not None:
        groups = (config.notifier.group, replay_group(config.notifier.group))
        shipped = runtime.run(migrate_into(old, config.log_path, groups, config.log.stop_timeout_s))
        print(f"clickbus: migrated {sum(shipped.values())} unread records from {old}", file=sys.stderr)


async def _notify(config: Config) -> None:
    metrics = default_metrics()
    log = runtime.metered_log(config, metrics)
    notifier = runtime.notifier(config, log, metrics)  # before starting anything: a bad secret fails here
    limit_s = config.log.stop_timeout_s
    async with runtime.stop_signal() as stop, runtime.started(log, limit_s), runtime.flushing(metrics, log):
        starting = asyncio.create_task(notifier.start_retrying())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            runtime.heap.settle()
            print(f"clickbus notifier running for members {sorted(config.members)}", flush=True)
            await stopping
        starting.cancel()
        await asyncio.gather(starting, stopping, return_exceptions=True)
        await notifier.stop(limit_s)


def cmd_notifier(args: argparse.Namespace) -> int:
    """Run the notifier alone: deliver logged clicks to bidders (for scale-out)."""
    from clickbus import logging_setup

    config = _load(args)
    datadir.prepare(config.data_dir)
    logging_setup.configure(args.log_level)
    warn_if_shared(config.data_dir)
    _hold_supervisor(2 * config.log.stop_timeout_s + 5.0)  # its own stop, then the log's, with a grace
    runtime.run(_notify(config))
    return 0


async def _report_alone(config: Config) -> None:
    metrics = default_metrics()
    log = runtime.metered_log(config, metrics)
    reporter = runtime.reporter(config, log)
    limit_s = config.log.stop_timeout_s
    async with runtime.stop_signal() as stop, runtime.started(log, limit_s), runtime.flushing(metrics, log):
        await reporter.start()
        runtime.heap.settle()
        print(f"clickbus reporter counting into the {config.reports.store} store", flush=True)
        await stop.wait()
        await reporter.stop(limit_s)


def cmd_reporter(args: argparse.Namespace) -> int:
    """Run reporting alone: count the notifier's verdicts into the report store (for scale-out)."""
    from clickbus import logging_setup

    logging_setup.configure(args.log_level)
    config = _load(args)
    _hold_supervisor(2 * config.log.stop_timeout_s + 5.0)  # a child of `clickbus run`: it dies with it
    runtime.run(_report_alone(config))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Print a report: valid and invalid clicks and impressions, CTR, callbacks, by any dimensions."""
    from clickbus.reports import cli_report
    from clickbus.reports.window import QueryError

    config = _load(args)
    try:
        return runtime.run(cli_report.report(config, cli_report.params_of(args), sys.stdout))
    except QueryError as exc:
        print(f"clickbus: {exc}", file=sys.stderr)
        return 2


async def _dlq(config: Config, args: argparse.Namespace) -> None:
    from clickbus.notifier import dlq

    async with runtime.started(runtime.metered_log(config, default_metrics()), config.log.stop_timeout_s) as log:
        if args.dlq_command == "list":
            letters = await dlq.pending(log, config.notifier.group)
            for letter in letters:
                sys.stdout.buffer.write(orjson.dumps(letter.summary()) + b"\n")
            print(f"{len(letters)} dead letter(s) pending", file=sys.stderr)
        else:
            await _replay(log, config)


async def _replay(log: Log, config: Config) -> None:
    from rich.console import Console
    from rich.progress import Progress

    from clickbus.notifier import dlq

    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("replaying dead letters", total=None)
        done = await dlq.replay(
            log,
            config.notifier.group,
            on_start=lambda n: progress.update(task, total=n),
            on_each=lambda: progress.advance(task),
        )
    print(f"replayed {done} dead letter(s) into {Topic.RETRY.value}", file=sys.stderr)


def cmd_dlq(args: argparse.Namespace) -> int:
    """List dead letters not yet replayed, or replay them (re-inject them for delivery)."""
    config = _load(args)
    datadir.prepare(config.data_dir)
    runtime.run(_dlq(config, args))
    return 0


def _format_entry(entry: Entry, pretty: bool) -> bytes:
    if not pretty:
        return entry.value
    record = orjson.loads(entry.value)
    return orjson.dumps({"offset": entry.offset, "partition": entry.partition, **record}, option=orjson.OPT_INDENT_2)


async def _tail(config: Config, args: argparse.Namespace) -> None:
    log = runtime.metered_log(config, default_metrics())  # reading needs no start: a reader opens its own
    pretty = sys.stdout.isatty()
    from_beginning = args.from_beginning or not args.follow  # without --follow: everything there is, then exit
    async for entry in log.read(args.topic, from_beginning=from_beginning, follow=args.follow):
        if args.member is not None and orjson.loads(entry.value).get("member_id") != args.member:
            continue
        sys.stdout.buffer.write(_format_entry(entry, pretty) + b"\n")
        sys.stdout.buffer.flush()


@contextlib.contextmanager
def _quiet_reader_logs() -> Iterator[None]:
    """`clickbus: ...` lines for what the reader says; the Kafka client's retries would repeat every second.

    The loggers are put back after: tests and embedders call `main` in their own process.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("clickbus: %(message)s"))
    ours, kafka = logging.getLogger("clickbus"), logging.getLogger("aiokafka")
    levels = ours.level, kafka.level
    ours.addHandler(handler)
    ours.setLevel(logging.WARNING)
    kafka.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        ours.removeHandler(handler)
        ours.setLevel(levels[0])
        kafka.setLevel(levels[1])


def cmd_tail(args: argparse.Namespace) -> int:
    """Print a topic's records from the oldest and exit, or follow new ones; pretty on a terminal, JSON lines piped."""
    config = _load(args)
    if config.log.backend == "embedded" and not config.log_path.exists():
        print(f"clickbus: no log at {config.log_path} yet (start clickbus first)", file=sys.stderr)
        return 1
    try:
        with _quiet_reader_logs():
            runtime.run(_tail(config, args))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Mint a click URL by hand, for integration testing."""
    from clickbus.creative import Inserter
    from clickbus.keystore import load_keyring
    from clickbus.landing import check_landing
    from clickbus.tokens import AdContext

    config = _load(args)
    if not config.tokens.keys:  # the key is generated into data_dir
        datadir.prepare(config.data_dir)
    ad = AdContext(
        member_id=args.member,
        auction_id_64=args.auction_id,
        user_id_64=args.user_id,
        creative_id=args.creative_id,
        landing_url=check_landing(args.landing, allow_private=config.edge.allow_private_landings),
        test=args.test,
    )
    ttl_s = args.ttl or config.tokens.ttl_s
    inserter = Inserter(
        load_keyring(config),
        config.edge.public_url,
        ttl_s=ttl_s,
        allow_private_landings=config.edge.allow_private_landings,
    )
    print(inserter.insert("", ad).click_url)
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    """Print fresh token key material (base64url), or write it to a file readable only by its owner."""
    from clickbus.keystore import encode_key
    from clickbus.tokens import new_key

    material = encode_key(new_key()) + "\n"
    if args.out is None:
        sys.stdout.write(material)
        return 0
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ClickbusError(f"{args.out}: already exists (keygen never overwrites a key)") from None
    except OSError as exc:
        raise ClickbusError(f"{args.out}: cannot create it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "w") as out:
        out.write(material)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


def cmd_apikey(args: argparse.Namespace) -> int:
    """Print a fresh server-side click API key, its SHA-256 and the configuration snippet."""
    import tomllib

    from clickbus.edge.apikeys import INSERT_KEY_PREFIX, KEY_PREFIX, new_api_key

    key, digest = new_api_key(INSERT_KEY_PREFIX if args.insert else KEY_PREFIX)
    snippet = _key_snippet(args, digest)
    configuration.from_mapping(tomllib.loads(snippet), env={})  # checked as at start: never a snippet it refuses
    print(f"key:    {key}\nsha256: {digest}\n")
    print(snippet, end="")
    holder = "ad server" if args.insert else "publisher"
    print(f"\n# Give the key to the {holder} once; only the hash goes into configuration.", file=sys.stderr)
    return 0


def _key_snippet(args: argparse.Namespace, digest: str) -> str:
    """The `[api_keys.NAME]` or `[insert_keys.NAME]` table for a key of `digest`."""
    import json
    import re

    name = args.name or ("adserver" if args.insert else "publisher")
    name = name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)
    if args.insert:
        members = ", ".join(str(m) for m in args.member)
        return f'[insert_keys.{name}]\nsha256 = "{digest}"\nmembers = [{members}]   # empty: any member\n'
    return f'[api_keys.{name}]\nsha256 = "{digest}"\nrate_per_s = {args.rate_per_s:g}\n'


def cmd_config(args: argparse.Namespace) -> int:
    """Print the commented configuration file of every setting at its default (conf/clickbus.toml)."""
    from clickbus.settings.toml import render

    sys.stdout.write(render(Config))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """A live terminal view of the running service, read from its /metrics."""
    from clickbus.status import watch

    url = args.url or f"http://{_load(args).edge.admin_listen}/metrics"
    return watch(url, interval_s=args.interval, once=args.once)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML configuration (default: %(default)s)")
    parser = argparse.ArgumentParser(prog="clickbus", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Command) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=func.__doc__, description=func.__doc__, parents=[common])
        cmd.set_defaults(func=func)
        return cmd

    run = command("run", cmd_run)

    notifier = command("notifier", cmd_notifier)
    notifier.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    reporter = command("reporter", cmd_reporter)
    reporter.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    report = command("report", cmd_report)
    report.add_argument(
        "--since", help="a date (2026-12-03), a time (2026-12-03T13:00Z), or 24h / 7d ago (default 24h)"
    )
    report.add_argument("--until", help="the same forms (default: now)")
    report.add_argument("--by", action="append", default=[], help="dimensions, comma-separated, and hour, day or month")
    report.add_argument("--format", help="table, csv or json (default: table on a terminal, else csv)")
    for name in ("member", "publisher", "campaign", "creative", "placement", "country", "device", "source", "test"):
        report.add_argument(f"--{name}", help=f"only rows of this {name}")

    dlq = command("dlq", cmd_dlq)
    dlq.add_argument("dlq_command", choices=["list", "replay"])
    run.add_argument("--workers", type=_positive_int, default=1, help="edge processes sharing the listening sockets")
    run.add_argument("--force", action="store_true", help=f"allow --workers above {WORKERS_PER_CPU} per CPU")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # set by the supervisor on its children

    status = command("status", cmd_status)
    status.add_argument("--url", help="the service's /metrics (default: from edge.admin_listen)")
    status.add_argument("--once", action="store_true", help="print one snapshot and exit")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes (default: %(default)s)")
    run.add_argument("--no-notifier", action="store_true", help="serve the edge only")

    tail = command("tail", cmd_tail)
    tail.add_argument("--topic", default=Topic.CLICKS.value, choices=[t.value for t in Topic])
    tail.add_argument("--from-beginning", action="store_true", help="with --follow: start at the oldest record")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records (from the end)")
    tail.add_argument("--member", type=int, help="only records of this member")

    sign = command("sign", cmd_sign)
    sign.add_argument("--member", type=int, required=True)
    sign.add_argument("--landing", required=True)
    sign.add_argument("--auction-id", type=int, default=0)
    sign.add_argument("--user-id", type=int, default=0)
    sign.add_argument("--creative-id", type=int, default=0)
    sign.add_argument("--test", action="store_true")
    sign.add_argument("--ttl", type=int, help="seconds (default: tokens.ttl_s)")

    keygen = command("keygen", cmd_keygen)
    keygen.add_argument("--out", type=Path, help="file to create (mode 0600)")

    config = command("config", cmd_config)
    config.add_argument("action", choices=["defaults"])

    apikey = command("apikey", cmd_apikey)
    apikey.add_argument("action", choices=["new"])
    apikey.add_argument("--name", help="the [api_keys.NAME] table (default: publisher; with --insert: adserver)")
    apikey.add_argument("--rate-per-s", type=float, default=50.0, help="requests per second (default: %(default)s)")
    apikey.add_argument("--insert", action="store_true", help="an [insert_keys.NAME] key for POST /v1/insert")
    apikey.add_argument("--member", type=int, action="append", default=[], help="with --insert: a member it may use")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    previous = restrict_umask()  # what any command creates in data_dir (the log, keys, offsets) is the owner's alone
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"clickbus: {exc.problems[0] if len(exc.problems) == 1 else exc}", file=sys.stderr)
        return 2
    except AddressInUse as exc:  # the line alone: `127.0.0.1:8080 is already in use`
        print(exc, file=sys.stderr)
        return 2
    except CannotStart as exc:
        print(f"clickbus: {exc}", file=sys.stderr)
        return 2
    except ClickbusError as exc:
        print(f"clickbus: {exc}", file=sys.stderr)
        return 1
    finally:
        os.umask(previous)  # called in-process (tests, embedding), the caller's umask is its own again
