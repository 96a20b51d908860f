"""`reliability postmortem ID`, `reliability metrics serve` and `reliability incidents stats`.

Light at import: the store, DuckDB, Kafka and Dagster are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from reliability.errors import UserFacingError

DEFAULT_METRICS_PORT = 9464


def _store_url_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store-url", help="incident store URL (default: RELIABILITY_INCIDENT_STORE_URL, "
                   "else incident_store_url in the settings, else SQLite in DAGSTER_HOME)")  # fmt: skip


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "postmortem",
        help="write a blameless post-mortem of an incident, with evidence-backed five whys",
        description="Write a blameless post-mortem: summary, timeline, durations, blast radius, five whys "
        "pre-filled from evidence (each marked as hypothesis), action items merged from the notes file.",
    )
    p.add_argument("id", help="incident id: INC-<n> or <n>")
    p.add_argument("--format", choices=("md", "html"), default="md", help="Markdown (default) or self-contained HTML")
    p.add_argument("-o", "--output", type=Path, help="write to this file (default: stdout)")
    p.add_argument("--notes", type=Path, help="notes file to merge (default: postmortems/INC-<n>.notes.yaml "
                   "next to the incident store; created with the suggested action items if missing)")  # fmt: skip
    p.add_argument("--topic", help="Kafka topic feeding the root asset (default: the orders topic for raw_orders)")
    p.add_argument("--no-kafka", action="store_true", help="do not read the topic (no broker at hand)")
    p.add_argument("--no-lineage", action="store_true", help="do not load the Dagster definitions for the edges")
    p.add_argument("--record", action="store_true",
                   help="also record it as an observation on the root asset (Dagster instance)")  # fmt: skip
    _store_url_arg(p)
    p.set_defaults(handler=cmd_postmortem)

    m = subparsers.add_parser("metrics", help="incident metrics for Prometheus")
    sub = m.add_subparsers(dest="metrics_command", metavar="COMMAND", required=True)
    s = sub.add_parser("serve", help="serve /metrics over HTTP (127.0.0.1 by default), or write a textfile")
    s.add_argument("--port", type=_port, default=DEFAULT_METRICS_PORT, help=f"port (default {DEFAULT_METRICS_PORT})")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--textfile", type=Path, help="write the metrics once to this file (node_exporter) and exit")
    _store_url_arg(s)
    s.set_defaults(handler=cmd_metrics_serve)


def add_incident_commands(incident_actions: Any) -> None:
    """`reliability incidents stats` (registered by `reliability.incidents.cli`)."""
    p = incident_actions.add_parser("stats", help="counts and MTTD/MTTA/MTTM/MTTR (median, p90) by dimension")
    p.add_argument("--since", type=_day, help="only incidents detected on or after this day (YYYY-MM-DD)")
    p.add_argument("--by", choices=("severity", "fault_class", "owner", "week"), action="append",
                   help="dimension(s) to break down by (repeatable; default: all four)")  # fmt: skip
    p.set_defaults(handler=cmd_stats)


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit() and 0 < int(text) < 65536):
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {text!r}")
    return int(text)


def _day(text: str) -> datetime:
    try:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a day: {text!r} (expected YYYY-MM-DD)") from None


def _store(args: argparse.Namespace):  # noqa: ANN202
    from reliability.incidents.store import IncidentStore

    url = getattr(args, "store_url", None)
    if url is not None and not url.strip():
        raise UserFacingError("--store-url is blank; leave it out to use RELIABILITY_INCIDENT_STORE_URL or the default")
    return IncidentStore(url, create=False, url_origin="--store-url" if url else None)


def cmd_postmortem(args: argparse.Namespace) -> int:
    from reliability.clock import utcnow
    from reliability.incidents.model import parse_incident_id
    from reliability.review.service import write_postmortem
    from reliability.settings import get_settings

    try:
        incident_id = parse_incident_id(args.id)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None
    settings = get_settings()
    with _store(args) as store:
        root = store.get(incident_id).root_asset
        edges = [] if args.no_lineage else _edges()
        topic = args.topic or (_default_topic() if root == "raw_orders" else None)
        written = write_postmortem(store, incident_id, args.format, utcnow(), settings.warehouse_path, topic,
                                   edges=edges, notes_path=args.notes, read_kafka=not args.no_kafka,
                                   record_impact=True)  # fmt: skip
    if args.output:
        try:
            args.output.write_text(written.text, encoding="utf-8")
        except OSError as exc:
            raise UserFacingError(f"cannot write {args.output}: {exc.strerror or type(exc).__name__}") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(written.text)
    if written.notes_created:
        print(f"notes file created: {written.notes_path} (edit it and regenerate)", file=sys.stderr)
    if args.record:
        from reliability.review.defs import record_postmortem

        record_postmortem(written.postmortem, str(args.output.resolve()) if args.output else None)
    return 0


def _default_topic() -> str:
    from reliability.kafka.events import DEFAULT_TOPIC

    return DEFAULT_TOPIC


def _edges() -> list[tuple[str, str]]:
    from reliability.definitions import defs  # heavy: the whole code location
    from reliability.incidents.lineage import graph_from_definitions
    from reliability.review.service import lineage_edges

    return lineage_edges(graph_from_definitions(defs))


def cmd_metrics_serve(args: argparse.Namespace) -> int:
    from reliability.review.prometheus import registry_for, serve, store_loader

    url = getattr(args, "store_url", None)
    with _store(args):  # fail now, with a one-line error, if the store cannot be opened
        pass
    registry = registry_for(store_loader(url))
    if args.textfile:
        from prometheus_client import write_to_textfile

        write_to_textfile(str(args.textfile), registry)
        print(f"wrote {args.textfile}", file=sys.stderr)
        return 0
    import time

    try:
        serve(registry, args.host, args.port)
    except OSError as exc:
        raise UserFacingError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    print(f"serving incident metrics on http://{args.host}:{args.port}/metrics (Ctrl-C to stop)", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0


def stats_rows(times: list, dimensions: list[str]) -> list[tuple[str, list[str], list[tuple]]]:
    from reliability.review.metrics import METRICS, overall, stats_by
    from reliability.review.postmortem import human_seconds

    columns = ["value", "count", "open"] + [f"{m.upper()} {q}" for m in METRICS for q in ("median", "p90")]

    def row(g) -> tuple:  # noqa: ANN001
        cells = [human_seconds(v) if v is not None else "-" for m in METRICS for v in g.figures[m]]
        return (g.value, g.count, g.open, *cells)

    tables = [("all incidents", columns, [row(overall(times))])]
    tables += [(f"by {d}", columns, [row(g) for g in stats_by(times, d)]) for d in dimensions]
    return tables


def cmd_stats(args: argparse.Namespace) -> int:
    from reliability.review.metrics import DIMENSIONS, load_figures, since
    from reliability.terminal import print_tables

    with _store(args) as store:
        times = since(load_figures(store)[0], args.since)
    print_tables(stats_rows(times, args.by or list(DIMENSIONS)))
    return 0
