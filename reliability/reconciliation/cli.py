"""`reliability incidents reconcile ID [--dry-run]`: repair exactly the partitions an incident affected.

Registered under `incidents` by `reliability.incidents.cli`; Dagster and the code location are imported
inside the handler only, so the rest of the CLI stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from reliability.errors import UserFacingError


def add_commands(incident_actions: Any) -> None:
    """Add `reconcile` to the `incidents` sub-commands."""
    p = incident_actions.add_parser(
        "reconcile", help="rebuild exactly the affected partitions with one Dagster backfill (loads Dagster defs)"
    )
    p.add_argument("id", help="INC-<n> or <n>")
    p.add_argument("--dry-run", action="store_true", help="print the plan; submit and record nothing")
    p.add_argument("--partition", action="append", default=[], metavar="KEY",
                   help="an affected partition of the root (repeatable); default: the incident's")  # fmt: skip
    p.add_argument("--partition-range", metavar="FIRST..LAST", help="affected partitions of the root, both ends in")
    p.add_argument("--replay-kafka", action="store_true",
                   help="Kafka-fed root: first replay its bad days from Kafka, exactly once (a duplicates "
                   "incident: the producer's copies are dropped)")  # fmt: skip
    p.add_argument("--kafka-topic", default="shop.orders", help="with --replay-kafka: the source topic")
    p.add_argument("--kafka-group", default="reliability.raw_orders",
                   help="with --replay-kafka: the consumer group whose offsets are stored with the rows")  # fmt: skip
    p.add_argument("--json", action="store_true", help="the plan (and the backfill id) as JSON")
    p.set_defaults(handler=cmd_reconcile)


def cmd_reconcile(args: argparse.Namespace) -> int:
    import dagster as dg

    from reliability.clock import utcnow
    from reliability.definitions import defs  # heavy: the whole code location
    from reliability.incidents.config import open_store
    from reliability.incidents.model import parse_incident_id
    from reliability.reconciliation.service import reconcile

    try:
        incident_id = parse_incident_id(args.id)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    instance = None if args.dry_run else dg.DagsterInstance.get()
    now = utcnow()
    replayer = None
    if args.replay_kafka:
        from reliability.kafka.broker import bootstrap_servers
        from reliability.kafka.dlq_ops import kafka_replayer
        from reliability.settings import get_settings

        replayer = kafka_replayer(get_settings().warehouse_path, bootstrap_servers(), args.kafka_topic,
                                  args.kafka_group, now=now, actor="reliability-reconcile",
                                  incident=f"INC-{incident_id}")  # fmt: skip
    with open_store(getattr(args, "store_url", None)) as store:
        result = reconcile(store, instance, defs.resolve_asset_graph(), incident_id, now=now,
                           partitions=args.partition, partition_range_text=args.partition_range,
                           dry_run=args.dry_run, replay_kafka=replayer)  # fmt: skip
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=2, sort_keys=True) + "\n")
        return 0
    plan = result.plan
    root_keys = ", ".join(plan.root_partitions) or "unpartitioned"
    print(
        f"INC-{incident_id}: rebuild {plan.size} (asset, partition) pair(s) from {plan.root} "
        f"[{root_keys}; partitions from {result.partitions_from}]"
    )
    for line in plan.lines():
        print(f"  {line}")
    if result.kafka_replay is not None:
        for line in result.kafka_replay.lines():
            print(line)
    if result.backfill_id:
        print(f"submitted backfill {result.backfill_id} (UI: Backfills page; the daemon runs it, then "
              "reconciliation_verify_sensor resolves the incident or keeps it open)")  # fmt: skip
    else:
        print("dry run: nothing submitted, nothing recorded")
    return 0
