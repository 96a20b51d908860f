"""`reliability incidents ...` and `reliability blast-radius`.

Store commands import SQLAlchemy and rich only (never Dagster), so they stay fast; `blast-radius`
loads the code location's Definitions. Every cell is rendered as plain `rich.text.Text`, so asset
keys or notes containing rich markup, HTML or SQL are shown verbatim.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

from reliability.errors import UserFacingError
from reliability.reconciliation.cli import add_commands as add_reconcile_commands

STATUSES = ("open", "acknowledged", "mitigated", "resolved", "reopened", "active")


MAX_LIMIT = 1_000_000


def positive_int(text: str) -> int:
    """argparse type: a whole number from 1 to MAX_LIMIT (`--limit 0` would silently mean "no limit", and a
    huge one overflows the database's integer)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LIMIT:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_LIMIT}, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    inc = subparsers.add_parser("incidents", help="list, inspect and work incidents")
    inc.add_argument("--store-url", help="incident store URL (default: RELIABILITY_INCIDENT_STORE_URL, "
                     "else incident_store_url in the settings, else SQLite in DAGSTER_HOME)")  # fmt: skip
    sub = inc.add_subparsers(dest="incidents_command", metavar="COMMAND", required=True)
    json_help = "stable JSON for scripts instead of a table"
    id_help = "incident id: INC-<n> or <n>"

    p = sub.add_parser("list", help="incidents, newest first")
    p.add_argument("--status", choices=STATUSES, help="only this status ('active' = not resolved)")
    p.add_argument("--limit", type=positive_int, default=50, help=f"at most this many (1 to {MAX_LIMIT}; default 50)")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("show", help="one incident with blast radius and timeline")
    p.add_argument("id", help=id_help)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_show)

    for name, help_text in (("ack", "acknowledge"), ("mitigate", "mark mitigated"), ("reopen", "reopen")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("id", help=id_help)
        p.add_argument("--note", help="why (added to the timeline; not blank)")
        _actor_arg(p)
        p.add_argument("--json", action="store_true", help=json_help)
        p.set_defaults(handler=cmd_transition, transition=name)

    p = sub.add_parser("resolve", help="resolve with a note",
                       description="Resolve an incident, from any active status (see reliability/incidents/"
                       "README.md: resolving an unacknowledged incident is allowed).")  # fmt: skip
    p.add_argument("id", help=id_help)
    p.add_argument("--note", required=True, help="what fixed it (required, not blank)")
    _actor_arg(p)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_transition, transition="resolve")

    p = sub.add_parser("note", help="add a note to the timeline")
    p.add_argument("id", help=id_help)
    p.add_argument("text", help="the note (not blank; stored verbatim)")
    _actor_arg(p)
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_note)

    p = sub.add_parser(
        "search",
        help="full text over titles, notes and timelines",
        description="Case-insensitive substring search over titles, notes and timelines.",
    )
    p.add_argument("text", help="substring to look for (not blank)")
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("deliver", help="send due notifications from the outbox now",
                       description="Send due notifications from the outbox now, with the channels configured "
                       "in this shell's environment.")  # fmt: skip
    p.add_argument("--json", action="store_true", help=json_help)
    p.set_defaults(handler=cmd_deliver)

    from reliability.mitigation.cli import register_incident_commands

    register_incident_commands(sub)  # pause / resume: the circuit breaker (reliability.mitigation)
    add_reconcile_commands(sub)  # reliability incidents reconcile
    from reliability.review.cli import add_incident_commands

    add_incident_commands(sub)  # reliability incidents stats

    br = subparsers.add_parser(
        "blast-radius",
        help="everything downstream of an asset (loads Dagster defs)",
        description="Everything downstream of an asset, with tiers, owners, partitions "
        "and the severity a failure there would get (loads the Dagster definitions).",
    )
    br.add_argument("asset_key", help="e.g. raw_orders or a/b for multi-part keys")
    br.add_argument("--partition", help="the failing partition, if any (a key of the assets' partitions, "
                    "e.g. a day YYYY-MM-DD)")  # fmt: skip
    br.add_argument("--json", action="store_true", help=json_help)
    br.set_defaults(handler=cmd_blast_radius)


def _actor_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--actor", default=None, help="who (default: RELIABILITY_ACTOR or the OS user)")


def _not_blank(value: str | None, what: str) -> str | None:
    """A note or search text that is empty or only whitespace is refused, not stored as nothing."""
    if value is not None and not value.strip():
        raise UserFacingError(f"{what} is blank")
    return value


def _actor(args: argparse.Namespace) -> str:
    if args.actor:
        return args.actor
    try:
        return os.environ.get("RELIABILITY_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _store(args: argparse.Namespace, *, read_only: bool = False):  # noqa: ANN202
    """The store; never created by the CLI (a mistyped path is an error, not a new empty store).

    `read_only` commands (list, show, search) plan no notifications and group nothing, so they skip the
    incidents config (and its YAML parser): they start faster. Commands that change incidents load it."""
    url = getattr(args, "store_url", None)
    if url is not None and not url.strip():
        raise UserFacingError("--store-url is blank; leave it out to use RELIABILITY_INCIDENT_STORE_URL or the default")
    origin = "--store-url" if url else None
    if read_only:
        from reliability.incidents.store import IncidentStore

        return IncidentStore(url, create=False, url_origin=origin)
    from reliability.incidents.config import open_store

    return open_store(url, create=False, url_origin=origin)


def _id(text: str) -> int:
    from reliability.incidents.model import parse_incident_id

    try:
        return parse_incident_id(text)
    except ValueError as exc:
        raise UserFacingError(str(exc)) from None


def _print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _ts(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


INCIDENT_COLUMNS = ("id", "sev", "status", "title", "root asset", "downstream", "detected")


def _incident_rows(incidents: list) -> list[tuple]:
    return [
        (inc.display_id, inc.severity, inc.status, inc.title, inc.root_asset,
         inc.blast_radius.get("downstream_count", 0), _ts(inc.detected_at))
        for inc in incidents
    ]  # fmt: skip


def cmd_list(args: argparse.Namespace) -> int:
    with _store(args, read_only=True) as store:
        incidents = store.list_incidents(status=args.status, limit=args.limit)
    if args.json:
        _print_json([i.to_dict() for i in incidents])
        return 0
    from reliability.terminal import print_tables

    print_tables([(f"{len(incidents)} incident(s)", INCIDENT_COLUMNS, _incident_rows(incidents))])
    return 0


def _show(inc: Any) -> None:
    from reliability.terminal import print_tables

    head = [
        ("status", inc.status), ("severity", f"{inc.severity} ({inc.severity_reason})"),
        ("root asset", inc.root_asset), ("fault class", inc.fault_class),
        ("owners", ", ".join(inc.owners) or "-"),
        ("impact started", _ts(inc.impact_started_at)), ("detected", _ts(inc.detected_at)),
        ("acknowledged", _ts(inc.acknowledged_at)), ("mitigated", _ts(inc.mitigated_at)),
        ("resolved", _ts(inc.resolved_at)), ("root-cause hint", inc.root_cause.get("text", "-")),
        ("exposures reached", ", ".join(inc.blast_radius.get("exposures", [])) or "-"),
        ("detections", inc.detection_count),
        ("durations (s)", ", ".join(f"{k.replace('_', ' ')} {v if v is not None else '-'}"
                                    for k, v in inc.durations().items())),
    ]  # fmt: skip
    assets = [(a.asset_key, a.role, a.depth, a.tier or "-", ", ".join(a.owners), ", ".join(a.partitions) or "-",
               a.kind) for a in inc.assets]  # fmt: skip
    timeline = [(_ts(e.at), e.kind, e.actor, e.message) for e in inc.timeline]
    print_tables([(f"{inc.display_id}: {inc.title}", ("field", "value"), head)], show_header=False)
    print_tables([
        ("affected assets", ("asset", "role", "depth", "tier", "owners", "partitions", "kind"), assets),
        ("timeline (UTC)", ("at", "kind", "actor", "message"), timeline),
    ])  # fmt: skip


def cmd_show(args: argparse.Namespace) -> int:
    incident_id = _id(args.id)
    with _store(args, read_only=True) as store:
        inc = store.get(incident_id)
    if args.json:
        _print_json(inc.to_dict(full=True))
    else:
        _show(inc)
    return 0


def cmd_transition(args: argparse.Namespace) -> int:
    from reliability.incidents.model import Status
    from reliability.terminal import print_line

    to = {"ack": Status.ACKNOWLEDGED, "mitigate": Status.MITIGATED, "resolve": Status.RESOLVED,
          "reopen": Status.REOPENED}[args.transition]  # fmt: skip
    if to == Status.RESOLVED and not args.note.strip():
        raise UserFacingError("resolve needs a --note saying what fixed it")
    incident_id, note = _id(args.id), _not_blank(args.note, "--note")
    with _store(args) as store:
        inc = store.transition(incident_id, to, _actor(args), note)
    if args.json:
        _print_json(inc.to_dict())
    else:
        print_line(f"{inc.display_id} is now {inc.status}")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    from reliability.terminal import print_line

    incident_id, text = _id(args.id), _not_blank(args.text, "the note")
    with _store(args) as store:
        entry = store.add_note(incident_id, _actor(args), text)
    if args.json:
        _print_json(entry.to_dict())
    else:
        print_line(f"note added to INC-{entry.incident_id}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    text = _not_blank(args.text, "the search text")
    with _store(args, read_only=True) as store:
        hits = store.search(text)
    if args.json:
        _print_json([{**inc.to_dict(), "matches": where} for inc, where in hits])
        return 0
    from reliability.terminal import print_tables

    rows = [(inc.display_id, inc.severity, inc.status, inc.title, " | ".join(where[:3])) for inc, where in hits]
    print_tables([(f"{len(hits)} incident(s) matching", ("id", "sev", "status", "title", "matched"), rows)])
    return 0


def cmd_deliver(args: argparse.Namespace) -> int:
    from reliability.incidents.config import load_incidents_config
    from reliability.incidents.notify import check_channel_settings, configured_channels, deliver_due
    from reliability.terminal import print_line

    cfg = load_incidents_config()
    check_channel_settings(cfg.routes)  # a malformed webhook fails here, by variable name, before any send
    channels = configured_channels(cfg.routes)
    with _store(args) as store:
        if not channels:
            raise UserFacingError(f"no notification channel is configured in this environment: set one of "
                                  f"{', '.join(configured_channels(cfg.routes, only_set=False))} (see {cfg.source}); "
                                  f"nothing was sent, outbox {store.outbox_counts()}")  # fmt: skip
        report = deliver_due(store, budget_s=cfg.delivery_budget_s * 6, timeout=cfg.delivery_timeout_s)
        counts = store.outbox_counts()
    out = {**report.to_dict(), "outbox": counts, "channels": channels}
    if args.json:
        _print_json(out)
    else:
        print_line(", ".join(f"{k}: {v}" for k, v in report.to_dict().items())
                   + f"; outbox {counts}; channels {', '.join(channels)}")  # fmt: skip
    return 0


def _check_partition(defs: Any, radius: Any, partition: str) -> None:
    """`--partition` must be a key of the partitions of the assets it would mark (e.g. a day)."""
    import dagster as dg

    asset_graph = defs.resolve_asset_graph()
    schemes = {}
    for a in radius.assets:
        key = dg.AssetKey.from_user_string(a.key)
        if asset_graph.has(key) and asset_graph.get(key).partitions_def is not None:
            schemes.setdefault(str(asset_graph.get(key).partitions_def), asset_graph.get(key).partitions_def)
    if not schemes:
        raise UserFacingError(f"--partition {partition!r}: nothing in the blast radius of "
                              f"{radius.roots[0] if radius.roots else 'this asset'} is partitioned")  # fmt: skip
    for name, partitions_def in schemes.items():
        if not partitions_def.has_partition_key(partition):
            raise UserFacingError(f"--partition {partition!r} is not a partition of {name} (the partition "
                                  "scheme of the assets downstream)")  # fmt: skip


def cmd_blast_radius(args: argparse.Namespace) -> int:
    from reliability.definitions import defs  # heavy: the whole code location
    from reliability.incidents.lineage import graph_from_definitions
    from reliability.incidents.triage import FaultClass, SeverityFacts, blast_radius, classify_severity
    from reliability.terminal import print_tables

    graph = graph_from_definitions(defs)
    if args.asset_key not in graph:
        known = ", ".join(sorted(graph.keys)[:20])
        raise UserFacingError(f"unknown asset key {args.asset_key!r}; known keys include: {known}")
    radius = blast_radius(graph, [args.asset_key], args.partition)
    if args.partition is not None:
        _check_partition(defs, radius, args.partition)
    severity, reason = classify_severity(SeverityFacts.of(radius, "ERROR", FaultClass.DATA_QUALITY))
    if args.json:
        _print_json({**radius.to_dict(), "severity_if_failing": str(severity), "severity_reason": reason})
        return 0
    title = (f"blast radius of {args.asset_key}: {len(radius.downstream)} downstream, "
             f"top tier {radius.top_tier or '-'}, an ERROR failure here would be {severity}")  # fmt: skip
    rows = [(a.key, a.depth, f"tier{a.tier}" if a.tier else "-", ", ".join(a.owners), ", ".join(a.partitions) or "-",
             a.kind) for a in radius.assets]  # fmt: skip
    print_tables([(title, ("asset", "depth", "tier", "owners", "partitions", "kind"), rows)])
    return 0
