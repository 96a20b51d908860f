"""`reliability kafka up|down|status|produce|ingest` and `reliability lag`; heavy imports in handlers."""

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
