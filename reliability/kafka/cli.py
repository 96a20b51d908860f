"""`reliability kafka up|down|status|produce|ingest|dlq` and `reliability lag`; heavy imports in handlers."""

from __future__ import annotations

import argparse
import json
from datetime import date


def register(subparsers: argparse._SubParsersAction) -> None:
    kafka = subparsers.add_parser("kafka", help="local Kafka broker, order events, ingestion")
    sub = kafka.add_subparsers(dest="kafka_command", metavar="COMMAND")
    kafka.set_defaults(handler=lambda _args: kafka.print_help() or 2)

    up = sub.add_parser("up", help="start a local Kafka 4.x broker (or use KAFKA_BOOTSTRAP_SERVERS)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the broker")
    up.set_defaults(handler=_up)
    sub.add_parser("down", help="stop the broker `kafka up` started").set_defaults(handler=_down)
    status = sub.add_parser("status", help="which cluster, and does it answer")
    status.add_argument("--json", action="store_true", help="JSON instead of lines of text")
    status.set_defaults(handler=_status)

    produce = sub.add_parser("produce", help="produce order events (JSON, schema shop.order v1)")
    produce.add_argument("--topic", default="shop.orders", help="topic to produce to (default shop.orders)")
    produce.add_argument("--count", type=int, default=1000, help="valid order events")
    produce.add_argument(
        "--days",
        type=int,
        help="instead of --count: the shop generator's orders of these days (same ids as its payments)",
    )
    produce.add_argument(
        "--end-date", type=date.fromisoformat, default=None, help="last day for --days (default today)"
    )
    produce.add_argument("--orders-per-day", type=int, default=1_000, help="generator scale for --days")
    produce.add_argument("--force", action="store_true", help="with --days: produce days the topic already holds")
    produce.add_argument("--first-id", type=int, default=1, help="order id of the first event")
    produce.add_argument("--seed", type=int, default=42, help="random seed: the same seed gives the same events")
    produce.add_argument("--poison", type=int, default=0, help="poison messages to interleave")
    produce.add_argument("--partitions", type=int, default=4, help="when the topic is created")
    produce.add_argument("--rate", type=float, help="messages per second (default: as fast as possible)")
    produce.add_argument(
        "--unsafe-retries",
        action="store_true",
        help="non-idempotent, retrying producer (acks=1): may duplicate/reorder; for fault injection",
    )
    produce.add_argument(
        "--resend-every",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="fault injection: send every Nth event twice in a row (identical key and payload), as a producer "
        "without idempotence does when it retries a batch whose ack was lost (implies --unsafe-retries)",
    )
    produce.set_defaults(handler=_produce)

    ingest = sub.add_parser("ingest", help="one exactly-once micro-batch from the topic into raw_orders")
    ingest.add_argument("--topic", default="shop.orders", help="topic to read (default shop.orders)")
    ingest.add_argument(
        "--group", default="reliability.raw_orders", help="consumer group whose offsets are kept with the rows"
    )
    ingest.add_argument(
        "--max-seconds", type=float, help="stop after this many seconds (default: at the end offsets seen at start)"
    )
    ingest.add_argument("--retry-for", type=float, default=30.0, help="seconds to retry transient broker errors")
    ingest.set_defaults(handler=_ingest)
    _register_dlq(sub)

    lag = subparsers.add_parser("lag", help="consumer lag per group (Burrow rules + time lag)")
    lag.add_argument("--group", action="append", default=[], help="only this group (repeatable)")
    lag.add_argument("--pattern", help="glob or regex of groups to show")
    lag.add_argument(
        "--samples", type=int, default=2, help="samples taken (the first gives the verdict; time lag needs 2)"
    )
    lag.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    lag.add_argument("--json", action="store_true", help="JSON instead of a table")
    lag.set_defaults(handler=_lag)


def _up(args: argparse.Namespace) -> int:
    from reliability.kafka import broker

    bootstrap, started = broker.up(timeout_s=args.timeout)
    print(f"Kafka {'started' if started else 'already available'} at {bootstrap}")
    return 0


def _down(args: argparse.Namespace) -> int:
    import os

    from reliability.kafka import broker

    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        print("KAFKA_BOOTSTRAP_SERVERS is set: that cluster is not ours to stop")
        return 0
    print("Kafka stopped" if broker.down() else "no local Kafka broker was running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from reliability.kafka import broker

    info = broker.status()
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key:>10}: {value}")
    return 0 if info.get("running") else 1


def _produce(args: argparse.Namespace) -> int:
    from reliability.kafka import clients, producer

    clients.ensure_topic(args.topic, args.partitions)
    if args.days is not None:
        return _produce_days(args)
    stats = producer.produce_orders(
        args.topic,
        args.count,
        seed=args.seed,
        first_id=args.first_id,
        poison_count=args.poison,
        idempotent=not args.unsafe_retries,
        rate_per_s=args.rate,
        resend_every=args.resend_every,
    )
    print(
        f"produced {stats.valid} order events and {stats.poison} poison message(s) to {args.topic} "
        f"in {stats.seconds:.1f}s"
    )
    return 0


def _non_negative_int(text: str) -> int:
    """argparse type: 0 or a positive whole number (bad input exits 2 with the value named)."""
    if not (text.isascii() and text.isdigit()):
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return int(text)


def _produce_days(args: argparse.Namespace) -> int:
    """The generator's orders of `--days` days as events, so payments and customers match them."""
    from reliability.errors import UserFacingError
    from reliability.kafka import producer
    from reliability.kafka.events import POISON_KINDS, poison_event
    from reliability.shop.generator import ShopScale, days_ending

    if args.days < 1 or args.orders_per_day < 1:
        raise UserFacingError("--days and --orders-per-day must be at least 1")
    scale = ShopScale(seed=args.seed, orders_per_day=args.orders_per_day)
    days = days_ending(args.end_date or date.today(), args.days)
    already = None if args.force else producer.last_produced_day(args.topic)
    if already is not None:
        skipped = [d for d in days if d <= already]
        days = [d for d in days if d > already]
        if skipped:
            print(
                f"{args.topic} already holds orders up to {already}: skipping {len(skipped)} day(s) (--force to resend)"
            )
    if not days:
        print(f"nothing to produce: {args.topic} is up to date")
        return 0
    total = producer.produce_shop_days(
        args.topic, days, scale, idempotent=not args.unsafe_retries, rate_per_s=args.rate,
        resend_every=args.resend_every,
    )  # fmt: skip
    if args.poison:  # after the valid events (rejected by ingestion whatever ids they carry)
        producer.produce(
            args.topic,
            ((b"poison", poison_event(POISON_KINDS[i % len(POISON_KINDS)], i + 1)) for i in range(args.poison)),
            idempotent=not args.unsafe_retries,
        )
    print(
        f"produced {total} order events for {len(days)} day(s) {days[0]}..{days[-1]} "
        f"and {args.poison} poison message(s) to {args.topic}"
    )
    return 0


def _ingest(args: argparse.Namespace) -> int:
    """One micro-batch; says how far it got and why it stopped (exit 1 when it stopped on an error)."""
    import sys

    from confluent_kafka import KafkaException

    from reliability.errors import UserFacingError
    from reliability.kafka.broker import bootstrap_servers
    from reliability.kafka.ingest import Ingestor, run_retrying, summary
    from reliability.settings import get_settings

    warehouse = get_settings().warehouse_path
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    ingestor = Ingestor(warehouse, topic=args.topic, group_id=args.group, bootstrap=bootstrap_servers())
    try:
        stats = run_retrying(ingestor, retry_for_s=args.retry_for, max_seconds=args.max_seconds)
    except (UserFacingError, KafkaException):
        print(summary(ingestor.stats, args.topic), file=sys.stderr)
        return 1
    finally:
        ingestor.close()
    print(summary(stats, args.topic))
    return 1 if stats.stalled else 0


def format_table(results) -> str:
    """The lag evaluation as a plain-text table (one line per group, then its non-OK partitions)."""
    header = ("GROUP", "STATUS", "TOTAL LAG", "TIME LAG", "WORST PARTITION", "MEMBERS", "NOTE")
    rows = [header]
    for r in results:
        worst = "-"
        if r.worst is not None:
            worst = f"{r.worst.topic}[{r.worst.partition}] {r.worst.status.value} lag={r.worst.lag}"
        note = r.error or ""
        if not note and r.no_commit_partitions:
            note = f"{r.no_commit_partitions} partition(s) without commit"
        rows.append(
            (
                r.group,
                r.status.value,
                str(r.total_lag),
                "-" if r.max_time_lag_s is None else f"{r.max_time_lag_s:.1f}s",
                worst,
                "-" if r.members is None else str(r.members),
                note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def _lag(args: argparse.Namespace) -> int:
    from reliability.kafka import broker, sampling
    from reliability.kafka.lag import GroupStatus, error_result, worst_group_status

    watch = sampling.WatchConfig(groups=tuple(args.group), pattern=args.pattern)
    try:
        bootstrap = broker.bootstrap_servers()
    except broker.KafkaUnavailable as exc:
        results = [error_result(g, str(exc)) for g in args.group] or [error_result("*", str(exc))]
    else:
        results = sampling.evaluate_once(
            bootstrap, watch, samples=max(1, args.samples), interval_s=args.interval, groups=args.group
        )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif not results:
        print("no consumer groups found")
    else:
        print(format_table(results))
    worst = worst_group_status(r.status for r in results)
    return 1 if worst in (GroupStatus.ERR, GroupStatus.NOT_FOUND) else 0


# ------------------------------------------------------------------------------------ dead letters
OFFSETS_HELP = "only these (PARTITION:OFFSET, comma-separated, repeatable); default: every unhandled one"


def _register_dlq(sub: argparse._SubParsersAction) -> None:
    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay after a fix, archive with a reason")
    dsub = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND")
    dlq.set_defaults(handler=lambda _args: dlq.print_help() or 2)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--topic", default="shop.orders", help="source topic whose dead letters (default shop.orders)")
        p.add_argument("--warehouse", help="DuckDB file (default: settings warehouse_path)")

    ls = dsub.add_parser("list", help="dead letters: position, key, error class, reason, when, handled?")
    common(ls)
    ls.add_argument("--unhandled", action="store_true", help="only those not yet replayed or archived")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    ls.set_defaults(handler=_dlq_list)

    show = dsub.add_parser("show", help="one dead letter: payload, DLQ headers, error (hostile bytes escaped)")
    common(show)
    show.add_argument("position", metavar="OFFSET", help="PARTITION:OFFSET, or OFFSET when only one has it")
    show.add_argument("--group", default="reliability.raw_orders", help="consumer group named in the headers")
    show.add_argument("--json", action="store_true", help="JSON (with the exact bytes in base64)")
    show.set_defaults(handler=_dlq_show)

    rp = dsub.add_parser("replay", help="re-ingest dead letters after a fix, exactly once (still bad: kept)")
    common(rp)
    rp.add_argument("--offsets", action="append", metavar="P:O,...", help=OFFSETS_HELP)
    rp.add_argument("--incident", metavar="ID", help="record the replay on this incident's timeline (INC-<n>)")
    rp.add_argument("--actor", default=None, help="who (default: RELIABILITY_ACTOR or the OS user)")
    rp.add_argument("--json", action="store_true", help="the outcome as JSON")
    rp.set_defaults(handler=_dlq_replay)

    ar = dsub.add_parser("archive", help="mark dead letters handled without a row, with a reason")
    common(ar)
    ar.add_argument("--reason", required=True, help="why they are archived (kept with them and on the incident)")
    ar.add_argument("--offsets", action="append", metavar="P:O,...", help=OFFSETS_HELP)
    ar.add_argument("--incident", metavar="ID", help="record the reason on this incident's timeline (INC-<n>)")
    ar.add_argument("--actor", default=None, help="who (default: RELIABILITY_ACTOR or the OS user)")
    ar.set_defaults(handler=_dlq_archive)


def _dlq_warehouse(args: argparse.Namespace):
    from reliability.kafka.warehouse import open_warehouse

    path = args.warehouse
    if path is None:
        from reliability.settings import get_settings

        path = get_settings().warehouse_path
    return open_warehouse(path)


def _dlq_letters(args: argparse.Namespace, con):
    from reliability.kafka.dlq import parse_positions, select_letters
    from reliability.kafka.dlq_ops import load_dead_letters

    positions = parse_positions(args.offsets) if args.offsets else None
    return select_letters(load_dead_letters(con, args.topic), positions, args.topic)


def _dlq_incident(args: argparse.Namespace, store) -> tuple[int, str] | tuple[None, None]:
    """The incident named by --incident (checked before anything is written), or (None, None)."""
    if not args.incident:
        return None, None
    from reliability.incidents.model import parse_incident_id

    try:
        incident_id = parse_incident_id(args.incident)
    except ValueError as exc:
        from reliability.errors import UserFacingError

        raise UserFacingError(f"--incident: {exc}") from None
    return incident_id, store.get(incident_id).display_id


def _dlq_list(args: argparse.Namespace) -> int:
    from reliability.kafka.dlq import LIST_COLUMNS, list_rows
    from reliability.kafka.dlq_ops import load_dead_letters
    from reliability.terminal import print_tables

    with _dlq_warehouse(args) as con:
        letters = load_dead_letters(con, args.topic)
    if args.unhandled:
        letters = [d for d in letters if d.handled is None]
    if args.json:
        print(json.dumps([d.summary() for d in letters], indent=2))
        return 0
    unhandled = sum(1 for d in letters if d.handled is None)
    title = f"dead letters of {args.topic}: {len(letters)} listed, {unhandled} not yet handled"
    print_tables([(title, LIST_COLUMNS, list_rows(letters))])
    return 0


def _dlq_show(args: argparse.Namespace) -> int:
    from reliability.kafka.dead_letters import DeadLetter, dead_letter_record
    from reliability.kafka.dlq import escape_bytes, parse_position, select_letters
    from reliability.kafka.dlq_ops import load_dead_letters
    from reliability.terminal import printable

    with _dlq_warehouse(args) as con:
        (letter,) = select_letters(load_dead_letters(con, args.topic), [parse_position(args.position)], args.topic)
    record = DeadLetter(args.topic, letter.partition, letter.offset, letter.error, letter.detail, letter.key,
                        letter.payload, letter.rejected_at)  # fmt: skip
    _, _, headers = dead_letter_record(record, args.group)  # what was (or will be) published to <topic>.dlq
    info = letter.details(headers)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"dead letter {args.topic} {letter.position} ({'published' if letter.published else 'not yet published'}"
          f" to {args.topic}.dlq)")  # fmt: skip
    print(f"  error:    {letter.error}" + (f": {printable(letter.detail)}" if letter.detail else ""))
    print(f"  rejected: {info['rejected_at'] or '-'}")
    handled = "no (counted by kafka_dlq_depth)" if letter.handled is None else (
        f"{letter.handled} at {info['handled_at']}" + (f" for {letter.incident}" if letter.incident else "")
        + (f": {printable(letter.reason)}" if letter.reason else ""))  # fmt: skip
    print(f"  handled:  {handled}")
    print(f"  key:      {escape_bytes(letter.key)}")
    size = len(letter.payload) if letter.payload is not None else 0
    print(f"  payload ({size} bytes, non-text bytes escaped):")
    print(f"    {info['payload']}")
    print("  headers:")
    for name, value in headers:
        print(f"    {name}: {escape_bytes(value)}")
    return 0


def _dlq_replay(args: argparse.Namespace) -> int:
    from reliability.clock import utcnow
    from reliability.incidents.cli import _actor, _store
    from reliability.incidents.model import TimelineKind

    now, actor = utcnow(), _actor(args)
    store = _store(args) if args.incident else None
    try:
        incident_id, display = _dlq_incident(args, store) if store is not None else (None, None)
        from reliability.kafka.dlq_ops import replay

        with _dlq_warehouse(args) as con:
            letters = _dlq_letters(args, con)
            outcome = replay(con, args.topic, [(d.partition, d.offset, d.payload) for d in letters], now=now,
                             actor=actor, incident=display, reason="replayed after a fix")  # fmt: skip
        if store is not None and incident_id is not None and (outcome.replayed or outcome.still_invalid):
            store.add_timeline(incident_id, actor, TimelineKind.ACTION,
                               f"dead letters of {args.topic}: {outcome.summary()}",
                               {"action": "dlq_replay", "topic": args.topic, **outcome.to_dict()}, now=now)  # fmt: skip
    finally:
        if store is not None:
            store.close()
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        print(f"{args.topic}: {outcome.summary()}")
        for p, o, error, detail in outcome.still_invalid:
            from reliability.terminal import printable

            print(f"  {p}:{o} still {error}: {printable(detail or '')}")
    return 0


def _dlq_archive(args: argparse.Namespace) -> int:
    from reliability.clock import utcnow
    from reliability.errors import UserFacingError
    from reliability.incidents.cli import _actor, _store
    from reliability.incidents.model import TimelineKind
    from reliability.kafka.dlq_ops import archive

    if not args.reason.strip():
        raise UserFacingError("--reason is blank: say why these dead letters are archived")
    now, actor = utcnow(), _actor(args)
    store = _store(args) if args.incident else None
    try:
        incident_id, display = _dlq_incident(args, store) if store is not None else (None, None)
        with _dlq_warehouse(args) as con:
            letters = _dlq_letters(args, con)
            marked = archive(con, args.topic, [(d.partition, d.offset) for d in letters], reason=args.reason,
                             now=now, actor=actor, incident=display)  # fmt: skip
        positions = [f"{p}:{o}" for p, o in marked]
        if store is not None and incident_id is not None and marked:
            store.add_timeline(incident_id, actor, TimelineKind.ACTION,
                               f"archived {len(marked)} dead letter(s) of {args.topic}: {args.reason}",
                               {"action": "dlq_archive", "topic": args.topic, "reason": args.reason,
                                "positions": positions}, now=now)  # fmt: skip
    finally:
        if store is not None:
            store.close()
    where = f" (recorded on {display})" if display and marked else ""
    print(f"{args.topic}: archived {len(marked)} dead letter(s){where}"
          + (f"; {len(letters) - len(marked)} already handled" if len(letters) > len(marked) else ""))  # fmt: skip
    return 0
