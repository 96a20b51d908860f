"""The durable incident store: SQLAlchemy Core over SQLite (default) or PostgreSQL.

Guarantees:
- every write is one transaction; on SQLite it starts with `BEGIN IMMEDIATE` (WAL, busy timeout) so
  concurrent writers queue instead of failing, on PostgreSQL a unique key decides races;
- concurrent reporters of the same failure converge on one incident: an active incident owns a row in
  `incident_open_keys` (primary key = its root asset); a loser of the race gets IntegrityError, the
  transaction is retried and then joins the winner's incident;
- each detection has a unique `detection_key`, so re-processing events (sensor restart) is a no-op;
- the timeline and detections are append-only (database triggers refuse UPDATE/DELETE); incident
  rows change only under an optimistic `version` check and every change is written to the timeline;
- notifications go to the outbox in the same transaction as the change that caused them.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, and_, bindparam, case, create_engine, event, func, or_, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from reliability.clock import Clock, utcnow
from reliability.errors import UserFacingError
from reliability.incidents import schema as t
from reliability.incidents.lifecycle import (
    InvalidTransition,
    OpenKey,
    PlannedAction,
    TransitionPlan,
    move_on_new_failure,
    move_on_signals,
    plan_transition,
)
from reliability.incidents.model import (
    ACTIVE_STATUSES,
    Detection,
    FaultClass,
    Severity,
    Status,
    TimelineKind,
    format_incident_id,
)

if TYPE_CHECKING:  # grouping, notify and triage serve writes: read-only commands start without them
    from reliability.incidents.grouping import Action, GroupingPolicy, IncidentView
    from reliability.incidents.notify import IncidentSnapshot, OutboxMessage, Router
    from reliability.incidents.triage import BlastRadius, LineageGraph

SYSTEM_ACTOR = "reliability-sensor"
MAX_RETRIES = 30
_IN_CHUNK = 500


def _chunks(values: list) -> Iterator[list]:
    """Slices of at most _IN_CHUNK values: bound parameters of one IN (...) stay within every driver's limit."""
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


class IncidentNotFound(UserFacingError):
    pass


class _Conflict(Exception):
    """Another writer changed an incident under us: retry the whole transaction."""


def store_url_and_origin() -> tuple[str, str]:
    """The configured store URL and where it came from (named in errors): `RELIABILITY_INCIDENT_STORE_URL`,
    else `incident_store_url` in the settings file, else SQLite in DAGSTER_HOME (or <repo>/.dagster_home)."""
    url = os.environ.get("RELIABILITY_INCIDENT_STORE_URL")
    if url:
        return url, "RELIABILITY_INCIDENT_STORE_URL"
    from reliability.settings import get_settings

    settings = get_settings()  # a broken settings file is an error, not a silent fallback to another store
    if settings.incident_store_url:
        return settings.incident_store_url, f"{settings.source_file}: incident_store_url"
    home = os.environ.get("DAGSTER_HOME") or str(Path(__file__).resolve().parents[2] / ".dagster_home")
    return f"sqlite:///{Path(home) / 'incidents.db'}", "DAGSTER_HOME" if os.environ.get("DAGSTER_HOME") else "default"


def default_store_url() -> str:
    """`RELIABILITY_INCIDENT_STORE_URL` / settings, else SQLite in DAGSTER_HOME (or <repo>/.dagster_home)."""
    return store_url_and_origin()[0]


def _dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _loads(raw: str | None, default: object) -> object:
    return json.loads(raw) if raw else default


# --------------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class TimelineEntry:
    id: int
    incident_id: int
    at: datetime
    actor: str
    kind: str
    message: str
    data: dict

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "kind": self.kind,
            "message": self.message,
            "data": self.data,
        }


@dataclass(frozen=True)
class IncidentAsset:
    asset_key: str
    role: str
    depth: int
    tier: str | None
    owners: list[str]
    kind: str
    partitions: list[str] = field(default_factory=list)  # partition keys hit; ["<all>"]; [] unpartitioned

    def to_dict(self) -> dict[str, object]:
        return {
            "asset_key": self.asset_key,
            "role": self.role,
            "depth": self.depth,
            "tier": self.tier,
            "owners": self.owners,
            "kind": self.kind,
            "partitions": self.partitions,
        }


@dataclass(frozen=True)
class Incident:
    id: int
    title: str
    status: str
    severity: str
    severity_reason: str
    root_asset: str
    fault_class: str
    owners: list[str]
    impact_started_at: datetime | None
    detected_at: datetime
    last_detected_at: datetime
    acknowledged_at: datetime | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    blast_radius: dict
    root_cause: dict
    version: int
    error_level: bool = True
    assets: list[IncidentAsset] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    detection_count: int = 0

    @property
    def display_id(self) -> str:
        return format_incident_id(self.id)

    @property
    def active(self) -> bool:
        return Status(self.status) in ACTIVE_STATUSES

    def durations(self) -> dict[str, float | None]:
        """Seconds: time to detect (impact start -> detection), to acknowledge and to resolve (both
        from detection) - the MTTD / MTTA / MTTR intervals of one incident."""

        def between(a: datetime | None, b: datetime | None) -> float | None:
            return round((b - a).total_seconds(), 3) if a and b else None

        return {
            "to_detect": between(self.impact_started_at, self.detected_at),
            "to_acknowledge": between(self.detected_at, self.acknowledged_at),
            "to_resolve": between(self.detected_at, self.resolved_at),
        }

    def snapshot(self, previous_severity: str | None = None) -> IncidentSnapshot:
        from reliability.incidents.notify import IncidentSnapshot

        return IncidentSnapshot(
            incident_id=self.id,
            version=self.version,
            title=self.title,
            status=self.status,
            severity=self.severity,
            root_asset=self.root_asset,
            fault_class=self.fault_class,
            owners=tuple(self.owners),
            detected_at=self.detected_at,
            resolved_at=self.resolved_at,
            blast_radius=self.blast_radius,
            previous_severity=previous_severity,
        )

    def to_dict(self, full: bool = False) -> dict[str, object]:
        def iso(ts: datetime | None) -> str | None:
            return ts.isoformat() if ts else None

        out: dict[str, object] = {
            "id": self.display_id,
            "number": self.id,
            "title": self.title,
            "status": self.status,
            "severity": self.severity,
            "severity_reason": self.severity_reason,
            "root_asset": self.root_asset,
            "fault_class": self.fault_class,
            "owners": self.owners,
            "impact_started_at": iso(self.impact_started_at),
            "detected_at": iso(self.detected_at),
            "last_detected_at": iso(self.last_detected_at),
            "acknowledged_at": iso(self.acknowledged_at),
            "mitigated_at": iso(self.mitigated_at),
            "resolved_at": iso(self.resolved_at),
            "updated_at": iso(self.updated_at),
            "downstream_count": self.blast_radius.get("downstream_count", 0),
            "exposures": self.blast_radius.get("exposures", []),
            "version": self.version,
            "durations_s": self.durations(),
        }
        if full:
            from reliability.incidents.triage import partitions_by_asset

            out["affected_assets"] = [a.asset_key for a in self.assets if a.role in ("root", "failing")]
            out["affected_partitions"] = partitions_by_asset(self.blast_radius)
            out["assets"] = [a.to_dict() for a in self.assets]
            out["blast_radius"] = self.blast_radius
            out["root_cause"] = self.root_cause
            out["timeline"] = [e.to_dict() for e in self.timeline]
            out["detection_count"] = self.detection_count
        return out


def _incident_from_row(row) -> Incident:  # noqa: ANN001
    m = row._mapping
    return Incident(
        id=m["id"],
        title=m["title"],
        status=m["status"],
        severity=m["severity"],
        severity_reason=m["severity_reason"],
        root_asset=m["root_asset"],
        fault_class=m["fault_class"],
        owners=list(_loads(m["owners"], [])),  # type: ignore[call-overload]
        impact_started_at=m["impact_started_at"],
        detected_at=m["detected_at"],
        last_detected_at=m["last_detected_at"],
        acknowledged_at=m["acknowledged_at"],
        mitigated_at=m["mitigated_at"],
        resolved_at=m["resolved_at"],
        updated_at=m["updated_at"],
        blast_radius=dict(_loads(m["blast_radius"], {})),  # type: ignore[call-overload]
        root_cause=dict(_loads(m["root_cause"], {})),  # type: ignore[call-overload]
        version=m["version"],
        error_level=bool(m["error_level"]),
    )


@dataclass
class IngestResult:
    opened: list[int] = field(default_factory=list)
    joined: list[int] = field(default_factory=list)
    reopened: list[int] = field(default_factory=list)
    mitigated: list[int] = field(default_factory=list)
    duplicates: int = 0
    ignored_passes: int = 0
    # incident id -> asset keys touched by this batch (for run tags and observations)
    touched: dict[int, set[str]] = field(default_factory=dict)
    runs: dict[str, set[int]] = field(default_factory=dict)  # run id -> incident ids

    @property
    def incident_ids(self) -> set[int]:
        return set(self.touched)


@dataclass
class OutboxItem:
    id: int
    incident_id: int
    channel: str
    target: str
    event: str
    payload: object
    attempts: int
    idempotency_key: str


# --------------------------------------------------------------------------------------------- engine
class StoreUnavailable(UserFacingError):
    """The store cannot be opened: bad URL, missing driver or directory, refused login, host down."""


PG_CONNECT_TIMEOUT_S = 10  # unless the URL sets ?connect_timeout=


def safe_url(url: str) -> str:
    """The URL as it may be shown: password hidden; an unparseable one is not shown at all."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<unparseable URL>"


def _first_line(exc: BaseException, url: str) -> str:
    """The driver's own reason, one line, with the password (if any) blanked out."""
    from sqlalchemy.engine import make_url

    orig = getattr(exc, "orig", None) or exc
    line = next((ln.strip() for ln in str(orig).splitlines() if ln.strip()), type(orig).__name__)
    password = make_url(url).password
    return line.replace(str(password), "***") if password else line


def make_engine(url: str, origin: str = "incident store URL", create: bool = True) -> Engine:
    """An engine for SQLite or PostgreSQL. Errors name `origin` (the variable, file or option the URL came
    from) and never show a password. `create=False` (read commands) refuses a SQLite path whose directory
    does not exist instead of creating an empty store there."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # e.g. a port that is not a number
        raise StoreUnavailable(f"{origin}: not a database URL (expected sqlite:///<path> or "
                               "postgresql://<user>@<host>/<db>; the value is not shown)") from None  # fmt: skip
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreUnavailable(f"{origin}: unsupported database {parsed.get_backend_name()!r} in {safe_url(url)}; "
                               "the incident store runs on sqlite or postgresql")  # fmt: skip
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(url, parsed.database or "", origin, create)
        connect_args = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (NoSuchModuleError, ImportError) as exc:
        name = getattr(exc, "name", None) or parsed.get_driver_name()
        raise StoreUnavailable(f"{origin}: the database driver {name!r} for {safe_url(url)} is not installed") from None
    except ArgumentError as exc:
        raise StoreUnavailable(f"{origin}: {safe_url(url)}: {_first_line(exc, url)}") from None


def _sqlite_engine(url: str, path: str, origin: str, create: bool) -> Engine:
    if path and path != ":memory:" and not path.startswith("file:"):
        directory = Path(path).parent
        if not directory.is_dir():
            if not create:
                raise StoreUnavailable(
                    f"{origin}: no incident store at {path}: directory {directory} does not "
                    "exist (check the path; the sensor creates the store on its first tick)"
                )
            directory.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:  # noqa: ANN001
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout = 60000")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")

    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to head. Serialized across processes: SQLite's write lock / a PG advisory lock."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
        current = _current_revision(conn)
        if current == t.HEAD_REVISION:
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _current_revision(conn: Connection) -> str | None:
    from sqlalchemy import inspect

    if not inspect(conn).has_table(t.VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {t.VERSION_TABLE}")).scalar()


# --------------------------------------------------------------------------------------------- store
class IncidentStore:
    """All reads and writes of incidents. Cheap to construct; call `close()` when done."""

    def __init__(
        self,
        url: str | None = None,
        *,
        router: Router | None = None,
        policy: GroupingPolicy | None = None,
        migrate_schema: bool = True,
        clock: Clock = utcnow,
        create: bool = True,
        url_origin: str | None = None,
    ) -> None:
        """`create=False` for commands that only look: a SQLite path in a missing directory is an error
        then, not a new empty store. `url_origin` names where `url` came from in errors (`--store-url`)."""
        if url:
            origin = url_origin or "incident store URL"
        else:
            url, origin = store_url_and_origin()
        self.url = url
        self.clock = clock
        self.engine = make_engine(self.url, origin, create=create)
        self._router = router
        self._policy = policy
        if migrate_schema:
            self._open(origin)

    @property
    def router(self) -> Router:
        """Where notifications go (made on first use)."""
        if self._router is None:
            from reliability.incidents.notify import Router

            self._router = Router()
        return self._router

    @property
    def policy(self) -> GroupingPolicy:
        """How detections group into incidents (made on first use)."""
        if self._policy is None:
            from reliability.incidents.grouping import GroupingPolicy

            self._policy = GroupingPolicy()
        return self._policy

    def _open(self, origin: str) -> None:
        """Connect once without retrying (a refused login or a dead host is not transient: one clear
        error, not thirty retries), then migrate only if the schema is behind (alembic is imported then)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(sqlite_begin="DEFERRED")
                with conn.begin():
                    current = _current_revision(conn)
            if current != t.HEAD_REVISION:
                self._retry(lambda: migrate(self.engine))
        except DBAPIError as exc:
            self.engine.dispose()
            raise StoreUnavailable(f"cannot open the incident store {safe_url(self.url)} ({origin}): "
                                   f"{_first_line(exc, self.url)}") from None  # fmt: skip

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> IncidentStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------- plumbing
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(sqlite_begin="DEFERRED")
            with conn.begin():
                yield conn

    def _retry(self, fn: Callable[[], object]) -> object:
        delay = 0.01
        for attempt in range(MAX_RETRIES):
            try:
                return fn()
            except (IntegrityError, _Conflict, OperationalError) as exc:
                if isinstance(exc, OperationalError) and not _is_transient(exc):
                    raise
                if attempt == MAX_RETRIES - 1:
                    raise
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 0.5)
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[Connection], object]) -> object:
        def once() -> object:
            with self.engine.begin() as conn:
                return fn(conn)

        return self._retry(once)

    # ----------------------------------------------------------------------------------- timeline/outbox
    @staticmethod
    def _timeline_row(incident_id: int, at: datetime, actor: str, kind: TimelineKind, message: str,
                      data: dict | None = None) -> dict[str, object]:  # fmt: skip
        return {
            "incident_id": incident_id,
            "at": at,
            "actor": actor,
            "kind": str(kind),
            "message": message,
            "data": _dumps(data or {}),
        }

    def _outbox_rows(self, messages: Sequence[OutboxMessage], incident_id: int, now: datetime) -> list[dict]:
        return [
            {
                "incident_id": incident_id,
                "idempotency_key": m.idempotency_key,
                "channel": m.channel,
                "target": m.target,
                "event": m.event,
                "payload": _dumps(m.payload),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
            for m in messages
        ]

    def _notify(self, conn: Connection, inc: Incident, event_name: str, now: datetime,
                previous_severity: str | None = None) -> None:  # fmt: skip
        notified = conn.execute(
            select(t.outbox.c.channel, t.outbox.c.target).where(t.outbox.c.incident_id == inc.id).distinct()
        ).all()
        messages = self.router.plan(inc.snapshot(previous_severity), event_name, [(c, tg) for c, tg in notified])
        rows = self._outbox_rows(messages, inc.id, now)
        if rows:
            conn.execute(t.outbox.insert(), rows)

    @staticmethod
    def _update_incident(conn: Connection, inc: Incident, values: dict[str, object]) -> Incident:
        """Optimistic update: fails with _Conflict if someone else changed the row meanwhile."""
        values = {**values, "version": inc.version + 1}
        result = conn.execute(
            t.incidents.update()
            .where(and_(t.incidents.c.id == inc.id, t.incidents.c.version == inc.version))
            .values(**values)
        )
        if result.rowcount != 1:
            raise _Conflict(f"incident {inc.id} changed concurrently")
        row = conn.execute(select(t.incidents).where(t.incidents.c.id == inc.id)).one()
        return _incident_from_row(row)

    # ----------------------------------------------------------------------------------- ingest
    def ingest(
        self,
        detections: Sequence[Detection],
        lineage: LineageGraph | None = None,
        *,
        now: datetime | None = None,
        actor: str = SYSTEM_ACTOR,
    ) -> IngestResult:
        """Turn detections into incidents (open / join / reopen), in one transaction per call."""
        if not detections:
            return IngestResult()
        return self._write(lambda conn: self._ingest(conn, detections, lineage, now or self.clock(), actor))  # type: ignore[return-value]

    def _ingest(self, conn: Connection, detections: Sequence[Detection], lineage: LineageGraph | None,
                now: datetime, actor: str) -> IngestResult:  # fmt: skip
        from reliability.incidents.grouping import Action, decide

        result = IngestResult()
        # 1. drop detections already recorded (sensor restart, concurrent reporters of the same event)
        unique: dict[str, Detection] = {}
        for d in detections:
            unique.setdefault(d.detection_key, d)
        keys = list(unique)
        seen: set[str] = set()
        for chunk in _chunks(keys):
            seen.update(
                conn.execute(
                    select(t.detections.c.detection_key).where(t.detections.c.detection_key.in_(chunk))
                ).scalars()
            )
        result.duplicates = len(detections) - len(unique) + len(seen)
        fresh = sorted((d for k, d in unique.items() if k not in seen), key=lambda d: d.occurred_at)
        if not fresh:
            return result

        candidates = {d.asset_key for d in fresh}
        if lineage is not None:
            for key in list(candidates):
                if key in lineage:
                    candidates |= lineage.ancestors(key) | lineage.descendants(key)
        state = _BatchState.load(conn, now, self.policy, candidates)
        for d in fresh:
            if d.passed:
                inc_ids = state.incidents_failing_signal(d.signal_key)
                if not inc_ids:
                    result.ignored_passes += 1
                    state.det_rows.append(_detection_row(d, None, now))  # recorded: a replay must skip it too
                    continue
                for inc_id in inc_ids:
                    state.set_signal(inc_id, d.signal_key, failing=False, now=now)
                    state.timeline(inc_id, now, actor, TimelineKind.DETECTION,
                                   f"check passed again: {d.signal} on {d.asset_key}",
                                   {"detection_key": d.detection_key, "asset_key": d.asset_key,
                                    "signal": d.signal})  # fmt: skip
                    result.touched.setdefault(inc_id, set()).add(d.asset_key)
                state.det_rows.append(_detection_row(d, inc_ids[0], now))
                continue
            if d.blocked:
                self._record_blocked(d, now, actor, state, result)
                continue
            decision = decide(d.asset_key, d.occurred_at, state.views(), lineage, self.policy)
            if decision.action == Action.OPEN:
                inc = self._open_incident(conn, d, lineage, now, actor, state)
                result.opened.append(inc.id)
            else:
                assert decision.incident_id is not None
                inc = state.incidents[decision.incident_id]
                if decision.action == Action.REOPEN:
                    inc = self._reopen(conn, inc, d, now, actor, state)
                    result.reopened.append(inc.id)
                else:
                    result.joined.append(inc.id)
                inc = self._join(conn, inc, d, decision.action, decision.reason, lineage, now, actor, state)
            state.set_signal(inc.id, d.signal_key, failing=True, now=now)
            state.det_rows.append(_detection_row(d, inc.id, now))
            result.touched.setdefault(inc.id, set()).add(d.asset_key)
            if d.run_id:
                result.runs.setdefault(d.run_id, set()).add(inc.id)

        # auto-mitigate: every failing signal of an active incident passed again
        for inc_id in state.dirty_signal_incidents():
            inc = state.incidents.get(inc_id)
            move = move_on_signals(inc.status, state.signals.get(inc_id, {})) if inc else None
            if inc is None or move is None:
                continue
            plan = plan_transition(inc, move, at=now, actor=actor, reason="every failing check passed again")
            state.update(inc, dict(plan.changes))
            state.record(plan)
            result.mitigated.append(inc_id)
        state.flush(conn)
        for inc_id, (event_name, previous_severity) in state.notify.items():
            self._notify(conn, state.incidents[inc_id], event_name, now, previous_severity)
        return result

    @staticmethod
    def _record_blocked(d: Detection, now: datetime, actor: str, state: _BatchState, result: IngestResult) -> None:
        """An asset not built because a blocking check upstream failed: shown as `blocked` in the
        incident of that failure; it never opens an incident nor fails a signal of its own."""
        views = [v for v in state.views() if v.active]
        owners = [v for v in views if v.failing & set(d.blocked_by)] or [v for v in views if d.asset_key in v.assets]
        if not owners:
            state.det_rows.append(_detection_row(d, None, now))
            return
        inc_id = max(owners, key=lambda v: v.last_detected_at).incident_id
        state.timeline(inc_id, now, actor, TimelineKind.DETECTION,
                       f"{d.asset_key} blocked: not built because a blocking check failed on {', '.join(d.blocked_by)}",
                       _detection_data(d))  # fmt: skip
        if d.asset_key in state.assets.get(inc_id, set()):
            state.blocked_updates.append((inc_id, d.asset_key))
        state.det_rows.append(_detection_row(d, inc_id, now))
        result.touched.setdefault(inc_id, set()).add(d.asset_key)
        if d.run_id:
            result.runs.setdefault(d.run_id, set()).add(inc_id)

    def _triage(self, roots: Sequence[str], d: Detection, lineage: LineageGraph | None,
                error_level: bool) -> tuple[BlastRadius, Severity, str]:  # fmt: skip
        from reliability.incidents.triage import (
            LineageGraph,
            SeverityFacts,
            blast_radius,
            classify_severity,
            detection_is_broad,
        )

        graph = lineage or LineageGraph({}, {})
        radius = blast_radius(graph, roots, d.partitions)
        facts = SeverityFacts.of(radius, "ERROR" if error_level else "WARN", d.fault_class, detection_is_broad(d))
        severity, reason = classify_severity(facts)
        return radius, severity, reason

    @staticmethod
    def _radius_with_partitions_of(d: Detection, lineage: LineageGraph | None, values: dict[str, object],
                                   inc: Incident) -> dict | None:  # fmt: skip
        """The incident's blast radius with the partitions `d` reaches added (mapped downstream from
        its asset), or None when it lists them already."""
        from reliability.incidents.triage import (
            ALL_PARTITIONS,
            DETECTED_PARTITIONS,
            LineageGraph,
            blast_radius,
            merge_radius_partitions,
            with_detected_partitions,
        )

        current = json.loads(values["blast_radius"]) if "blast_radius" in values else inc.blast_radius  # type: ignore[arg-type]
        known = (current.get(DETECTED_PARTITIONS) or {}).get(d.asset_key) or []
        wanted = set(d.partitions) or {ALL_PARTITIONS}
        if ALL_PARTITIONS in known or wanted <= set(known):
            return None
        reached = blast_radius(lineage or LineageGraph({}, {}), [d.asset_key], d.partitions).to_dict()
        return with_detected_partitions(merge_radius_partitions(reached, current), d.asset_key, d.partitions)

    def _asset_rows(self, inc_id: int, radius: BlastRadius, failing: set[str], now: datetime,
                    existing: set[str]) -> list[dict]:  # fmt: skip
        rows = []
        for a in radius.assets:
            if a.key in existing:
                continue
            role = "root" if a.depth == 0 else ("failing" if a.key in failing else "impacted")
            rows.append({
                "incident_id": inc_id, "asset_key": a.key, "role": role, "depth": a.depth,
                "tier": f"tier{a.tier}" if a.tier else None, "owners": _dumps(list(a.owners)),
                "kind": a.kind, "first_seen_at": now,
            })  # fmt: skip
        return rows

    def _open_incident(self, conn: Connection, d: Detection, lineage: LineageGraph | None, now: datetime,
                       actor: str, state: _BatchState) -> Incident:  # fmt: skip
        from reliability.incidents.triage import AssetInfo, with_detected_partitions

        error_level = d.check_severity.upper() != "WARN"
        radius, severity, reason = self._triage([d.asset_key], d, lineage, error_level)
        info = lineage.asset_info(d.asset_key) if lineage else AssetInfo()
        title = f"{d.fault_class.value.replace('_', ' ')} on {d.asset_key}: {d.signal}"
        values = {
            "title": title,
            "status": str(Status.OPEN),
            "severity": str(severity),
            "severity_reason": reason,
            "root_asset": d.asset_key,
            "fault_class": str(d.fault_class),
            "owners": _dumps(sorted(info.owners)),
            "error_level": error_level,
            "impact_started_at": d.impact_started_at,  # unknown stays unknown: no fake 0 s to detect
            "detected_at": d.occurred_at,
            "last_detected_at": d.occurred_at,
            "updated_at": now,
            "blast_radius": _dumps(with_detected_partitions(radius.to_dict(), d.asset_key, d.partitions)),
            "root_cause": _dumps({"asset_key": d.asset_key, "text": f"most upstream failing asset: {d.asset_key}"}),
            "version": 1,
        }
        inc_id = conn.execute(t.incidents.insert().values(**values)).inserted_primary_key[0]
        # the race decider: a second reporter of the same root fails here and retries into a join
        conn.execute(t.open_incident_keys.insert().values(dedup_key=d.asset_key, incident_id=inc_id))
        state.asset_rows += self._asset_rows(inc_id, radius, {d.asset_key}, now, set())
        state.timeline(
            inc_id,
            now,
            actor,
            TimelineKind.DETECTION,
            f"incident opened: {d.signal} failed on {d.asset_key}",
            _detection_data(d),
        )
        exposures = f", exposures {', '.join(radius.exposures)}" if radius.exposures else ""
        state.timeline(inc_id, now, actor, TimelineKind.TRIAGE,
                       f"severity {severity}: {reason}; {len(radius.downstream)} downstream asset(s){exposures}",
                       {"severity": str(severity), "reason": reason, "downstream_count": len(radius.downstream),
                        "exposures": list(radius.exposures)})  # fmt: skip
        inc = _incident_from_values(inc_id, values)
        state.add(inc, {a.key for a in radius.assets})
        state.notify[inc_id] = ("trigger", None)
        return inc

    def _reopen(self, conn: Connection, inc: Incident, d: Detection, now: datetime, actor: str,
                state: _BatchState) -> Incident:  # fmt: skip
        plan = plan_transition(inc, Status.REOPENED, at=now, actor=actor,
                               reason=f"{d.signal} failed again on {d.asset_key}")  # fmt: skip
        if plan.open_key is OpenKey.CLAIM:
            conn.execute(t.open_incident_keys.insert().values(dedup_key=inc.root_asset, incident_id=inc.id))
        new = state.update(inc, dict(plan.changes))
        state.record(plan)
        for event_name in plan.notifications:
            state.notify.setdefault(inc.id, (event_name, None))
        return new

    def _join(self, conn: Connection, inc: Incident, d: Detection, action: Action, reason: str,
              lineage: LineageGraph | None, now: datetime, actor: str,
              state: _BatchState) -> Incident:  # fmt: skip
        from reliability.incidents.triage import AssetInfo, LineageGraph, blast_radius, merge_radius_partitions

        state.timeline(inc.id, now, actor, TimelineKind.DETECTION, f"{d.signal} failed on {d.asset_key} ({reason})",
                       {**_detection_data(d), "grouping": str(action)})  # fmt: skip
        values: dict[str, object] = {}
        if d.occurred_at > inc.last_detected_at:
            values["last_detected_at"] = d.occurred_at
        started = d.impact_started_at
        if started is not None and (inc.impact_started_at is None or started < inc.impact_started_at):
            values["impact_started_at"] = started
        error_level = inc.error_level or d.check_severity.upper() != "WARN"
        if error_level != inc.error_level:
            values["error_level"] = error_level
        existing = state.assets.setdefault(inc.id, set())
        failing_before = state.failing.setdefault(inc.id, set())
        from reliability.incidents.grouping import Action

        new_root = d.asset_key if action == Action.JOIN_UPSTREAM else None
        needs_triage = new_root is not None or d.asset_key not in existing or values.get("error_level") is True
        radius = severity = sev_reason = None
        if needs_triage:
            roots = [new_root] if new_root else [inc.root_asset]
            radius, severity, sev_reason = self._triage(roots, d, lineage, error_level)
        if new_root is not None:
            conn.execute(t.open_incident_keys.delete().where(t.open_incident_keys.c.incident_id == inc.id))
            conn.execute(t.open_incident_keys.insert().values(dedup_key=new_root, incident_id=inc.id))
            info = lineage.asset_info(new_root) if lineage else AssetInfo()
            assert radius is not None
            values.update(
                root_asset=new_root,
                title=f"{d.fault_class.value.replace('_', ' ')} on {new_root}: {d.signal}",
                blast_radius=_dumps(merge_radius_partitions(inc.blast_radius, radius.to_dict())),
                owners=_dumps(sorted(set(inc.owners) | set(info.owners))),
                root_cause=_dumps({"asset_key": new_root, "text": f"most upstream failing: {new_root}"}),
            )
            state.timeline(inc.id, now, actor, TimelineKind.TRIAGE,
                           f"root moved upstream {inc.root_asset} -> {new_root}; title was {inc.title!r}",
                           {"from": inc.root_asset, "to": new_root, "previous_title": inc.title,
                            "downstream_count": len(radius.downstream)})  # fmt: skip
            state.role_updates.append((inc.id, inc.root_asset))
        elif d.asset_key in existing and d.asset_key not in failing_before:
            state.role_updates.append((inc.id, d.asset_key))
        failing_before.add(d.asset_key)
        if radius is not None:
            rows = self._asset_rows(inc.id, radius, failing_before, now, existing)
            if d.asset_key not in existing and d.asset_key not in {r["asset_key"] for r in rows}:
                extra = self._asset_rows(inc.id, blast_radius(LineageGraph({}), [d.asset_key]), failing_before,
                                         now, existing)  # fmt: skip
                extra[0]["role"] = "failing"
                rows += extra
            state.asset_rows += rows
            existing.update(r["asset_key"] for r in rows)
        widened = self._radius_with_partitions_of(d, lineage, values, inc)
        if widened is not None:
            values["blast_radius"] = _dumps(widened)
        previous_severity = None
        if severity is not None and Severity(severity).rank < Severity(inc.severity).rank:  # only escalate
            previous_severity = inc.severity
            values.update(severity=str(severity), severity_reason=sev_reason)
            state.timeline(inc.id, now, actor, TimelineKind.TRIAGE,
                           f"severity escalated {inc.severity} -> {severity}: {sev_reason}",
                           {"from": inc.severity, "to": str(severity), "reason": sev_reason})  # fmt: skip
        renotify = False
        move = move_on_new_failure(inc.status, inc.resolved_at, d.occurred_at, self.policy.reopen_window)
        if move is not None:
            plan = plan_transition(inc, move, at=now, actor=actor, reason=f"{d.signal} failed on {d.asset_key}")
            values.update(plan.changes)
            state.record(plan)
            renotify = bool(plan.notifications)
        if not values:
            return inc
        values["updated_at"] = now
        new = state.update(inc, values)
        if previous_severity or renotify:
            # one trigger per incident per batch; keep the severity it had before the batch, so the
            # Alertmanager alert of that severity gets ended (a new incident just reports its final state)
            first = state.notify.get(inc.id)
            if first is None or (first[1] is None and inc.id not in state.opened):
                state.notify[inc.id] = ("trigger", previous_severity)
        return new

    # ----------------------------------------------------------------------------------- lifecycle
    def transition(self, incident_id: int, to: Status, actor: str, note: str | None = None,
                   now: datetime | None = None, actions: Sequence[PlannedAction] = ()) -> Incident:  # fmt: skip
        """Move an incident along its lifecycle as `lifecycle.plan_transition` plans it (refused moves
        raise InvalidTransition); `actions` are side effects recorded on the timeline with the move."""

        def apply(conn: Connection) -> Incident:
            inc = self._get_row(conn, incident_id)
            root_owner = conn.execute(
                select(t.open_incident_keys.c.incident_id).where(t.open_incident_keys.c.dedup_key == inc.root_asset)
            ).scalar()
            plan = plan_transition(inc, to, at=now or self.clock(), actor=actor, note=note, root_owner=root_owner)
            return self._persist_plan(conn, inc, plan.with_actions(*actions), root_owner)

        return self._write(apply)  # type: ignore[return-value]

    def _persist_plan(self, conn: Connection, inc: Incident, plan: TransitionPlan, root_owner: int | None) -> Incident:
        """Write one planned move: the row (version-checked), the open key, the timeline, the outbox."""
        new = self._update_incident(conn, inc, dict(plan.changes))
        if plan.open_key is OpenKey.RELEASE:
            conn.execute(t.open_incident_keys.delete().where(t.open_incident_keys.c.incident_id == inc.id))
        elif plan.open_key is OpenKey.CLAIM and root_owner is None:
            conn.execute(t.open_incident_keys.insert().values(dedup_key=inc.root_asset, incident_id=inc.id))
        conn.execute(t.timeline.insert(), [
            self._timeline_row(inc.id, plan.at, plan.actor, r.kind, r.message, dict(r.data)) for r in plan.timeline
        ])  # fmt: skip
        for event_name in plan.notifications:
            self._notify(conn, new, event_name, plan.at)
        return new

    def acknowledge(self, incident_id: int, actor: str, note: str | None = None,
                    now: datetime | None = None) -> Incident:  # fmt: skip
        return self.transition(incident_id, Status.ACKNOWLEDGED, actor, note, now)

    def mitigate(self, incident_id: int, actor: str, note: str | None = None,
                 now: datetime | None = None) -> Incident:  # fmt: skip
        return self.transition(incident_id, Status.MITIGATED, actor, note, now)

    def resolve(self, incident_id: int, actor: str, note: str | None = None,
                now: datetime | None = None) -> Incident:  # fmt: skip
        return self.transition(incident_id, Status.RESOLVED, actor, note, now)

    def reopen(self, incident_id: int, actor: str, note: str | None = None,
               now: datetime | None = None) -> Incident:  # fmt: skip
        return self.transition(incident_id, Status.REOPENED, actor, note, now)

    def add_timeline(self, incident_id: int, actor: str, kind: TimelineKind, message: str,
                     data: dict | None = None, now: datetime | None = None) -> TimelineEntry:  # fmt: skip
        """Append a note / action / notification record (never changes earlier entries)."""

        def apply(conn: Connection) -> TimelineEntry:
            self._get_row(conn, incident_id)
            at = now or self.clock()
            row = self._timeline_row(incident_id, at, actor, kind, message, data)
            new_id = conn.execute(t.timeline.insert().values(**row)).inserted_primary_key[0]
            conn.execute(t.incidents.update().where(t.incidents.c.id == incident_id)
                         .values(updated_at=at, version=t.incidents.c.version + 1))  # fmt: skip
            return TimelineEntry(new_id, incident_id, at, actor, str(kind), message, data or {})

        return self._write(apply)  # type: ignore[return-value]

    def add_note(self, incident_id: int, actor: str, note: str, now: datetime | None = None) -> TimelineEntry:
        return self.add_timeline(incident_id, actor, TimelineKind.NOTE, note, now=now)

    def record_root_cause(self, incident_id: int, hint: dict, actor: str = SYSTEM_ACTOR,
                          now: datetime | None = None) -> None:  # fmt: skip
        """Store the root-cause hint (the previous one stays in the timeline)."""

        def apply(conn: Connection) -> None:
            at = now or self.clock()
            inc = self._get_row(conn, incident_id)
            if inc.root_cause == hint:
                return
            self._update_incident(conn, inc, {"root_cause": _dumps(hint), "updated_at": at})
            conn.execute(t.timeline.insert(), [self._timeline_row(
                incident_id, at, actor, TimelineKind.TRIAGE, f"root-cause hint: {hint.get('text', '')}",
                {"previous": inc.root_cause, "hint": hint},
            )])  # fmt: skip

        self._write(apply)

    # ----------------------------------------------------------------------------------- reads
    def _get_row(self, conn: Connection, incident_id: int) -> Incident:
        row = conn.execute(select(t.incidents).where(t.incidents.c.id == incident_id)).one_or_none()
        if row is None:
            raise IncidentNotFound(f"no incident {format_incident_id(incident_id)}")
        return _incident_from_row(row)

    def get(self, incident_id: int) -> Incident:
        from reliability.incidents.triage import partitions_by_asset

        with self._read() as conn:
            inc = self._get_row(conn, incident_id)
            parts = partitions_by_asset(inc.blast_radius)
            assets = [
                IncidentAsset(
                    r.asset_key,
                    r.role,
                    r.depth,
                    r.tier,
                    list(_loads(r.owners, [])),
                    r.kind,  # type: ignore[call-overload]
                    parts.get(r.asset_key, []),
                )  # fmt: skip
                for r in conn.execute(
                    select(t.incident_assets)
                    .where(t.incident_assets.c.incident_id == incident_id)
                    .order_by(t.incident_assets.c.depth, t.incident_assets.c.asset_key)
                )
            ]
            entries = self._timeline(conn, incident_id)
            count = conn.execute(
                select(func.count()).select_from(t.detections).where(t.detections.c.incident_id == incident_id)
            ).scalar_one()
        return Incident(**{**inc.__dict__, "assets": assets, "timeline": entries, "detection_count": count})

    @staticmethod
    def _entry(r) -> TimelineEntry:  # noqa: ANN001
        return TimelineEntry(r.id, r.incident_id, r.at, r.actor, r.kind, r.message, dict(_loads(r.data, {})))  # type: ignore[call-overload]

    def _timeline(self, conn: Connection, incident_id: int) -> list[TimelineEntry]:
        query = select(t.timeline).where(t.timeline.c.incident_id == incident_id).order_by(t.timeline.c.id)
        return [self._entry(r) for r in conn.execute(query)]

    def timeline(self, incident_id: int) -> list[TimelineEntry]:
        with self._read() as conn:
            self._get_row(conn, incident_id)
            return self._timeline(conn, incident_id)

    def timelines(
        self,
        kinds: Sequence[TimelineKind] | None = None,
        incident_ids: Sequence[int] | None = None,
        active_only: bool = False,
    ) -> dict[int, list[TimelineEntry]]:
        """Timeline entries (of `kinds`, else all), oldest first, per incident, in ONE query: of
        `incident_ids`, else of every incident (or every active one). What a reader of many incidents
        needs (the incident metrics at each Prometheus scrape; the mitigation area folding `action`
        entries into what is paused) without a query per incident. Incidents without such an entry are
        absent."""
        query = select(t.timeline)
        if kinds is not None:
            query = query.where(t.timeline.c.kind.in_([str(k) for k in kinds]))
        if incident_ids is not None:
            query = query.where(t.timeline.c.incident_id.in_(list(incident_ids)))
        elif active_only:
            active = select(t.incidents.c.id).where(t.incidents.c.status.in_([str(s) for s in ACTIVE_STATUSES]))
            query = query.where(t.timeline.c.incident_id.in_(active))
        out: dict[int, list[TimelineEntry]] = {}
        with self._read() as conn:
            for r in conn.execute(query.order_by(t.timeline.c.id)):
                out.setdefault(r.incident_id, []).append(self._entry(r))
        return out

    def signals(self, incident_id: int) -> dict[str, bool]:
        """The incident's signals (`asset::check`, ...) -> still failing: what verifying a repair re-checks."""
        with self._read() as conn:
            self._get_row(conn, incident_id)
            rows = conn.execute(select(t.incident_signals).where(t.incident_signals.c.incident_id == incident_id))
            return {r.signal_key: bool(r.failing) for r in rows}

    def list_incidents(self, status: str | None = None, limit: int | None = None) -> list[Incident]:
        query = select(t.incidents).order_by(t.incidents.c.id.desc())
        if status == "active":
            query = query.where(t.incidents.c.status.in_([str(s) for s in ACTIVE_STATUSES]))
        elif status:
            query = query.where(t.incidents.c.status == str(Status(status)))
        if limit:
            query = query.limit(limit)
        with self._read() as conn:
            return [_incident_from_row(r) for r in conn.execute(query)]

    def search(self, needle: str, limit: int = 100) -> list[tuple[Incident, list[str]]]:
        """Case-insensitive substring search over titles, root assets, notes and timeline messages."""
        pattern = "%" + _like_escape(needle.lower()) + "%"
        hits: dict[int, list[str]] = {}
        with self._read() as conn:
            for r in conn.execute(
                select(t.incidents.c.id).where(
                    or_(func.lower(t.incidents.c.title).like(pattern, escape="\\"),
                        func.lower(t.incidents.c.root_asset).like(pattern, escape="\\"))
                )
            ):  # fmt: skip
                hits.setdefault(r.id, []).append("title")
            for r in conn.execute(
                select(t.timeline.c.incident_id, t.timeline.c.kind, t.timeline.c.message)
                .where(func.lower(t.timeline.c.message).like(pattern, escape="\\"))
                .order_by(t.timeline.c.id)
            ):
                hits.setdefault(r.incident_id, []).append(f"{r.kind}: {r.message}")
            ids = sorted(hits, reverse=True)[:limit]
            rows = {
                r.id: _incident_from_row(r)
                for r in conn.execute(select(t.incidents).where(t.incidents.c.id.in_(ids)))
            } if ids else {}  # fmt: skip
        return [(rows[i], hits[i]) for i in ids]

    def unexplained(self, limit: int = 100) -> list[int]:
        """Active incidents whose root-cause hint has not been filled from the event log yet."""
        with self._read() as conn:
            return list(conn.execute(
                select(t.incidents.c.id)
                .where(and_(t.incidents.c.status.in_([str(s) for s in ACTIVE_STATUSES]),
                            ~t.incidents.c.root_cause.like('%"changes"%')))
                .order_by(t.incidents.c.id.desc())
                .limit(limit)
            ).scalars())  # fmt: skip

    def count(self) -> int:
        with self._read() as conn:
            return conn.execute(select(func.count()).select_from(t.incidents)).scalar_one()

    # ----------------------------------------------------------------------------------- outbox
    def due_outbox(self, now: datetime | None = None, limit: int = 100) -> list[OutboxItem]:
        """Pending messages due now, oldest first, each only once every earlier message to the same
        receiver about the same incident is out (so PagerDuty never sees resolve before trigger)."""
        at = now or self.clock()
        earlier = t.outbox.alias("earlier")
        with self._read() as conn:
            rows = conn.execute(
                select(t.outbox)
                .where(and_(t.outbox.c.status == "pending", t.outbox.c.next_attempt_at <= at,
                            or_(t.outbox.c.claimed_until.is_(None), t.outbox.c.claimed_until < at),
                            ~select(earlier.c.id).where(and_(
                                earlier.c.status == "pending", earlier.c.id < t.outbox.c.id,
                                earlier.c.incident_id == t.outbox.c.incident_id,
                                earlier.c.channel == t.outbox.c.channel,
                                earlier.c.target == t.outbox.c.target)).exists()))
                .order_by(t.outbox.c.id)
                .limit(limit)
            ).all()  # fmt: skip
        return [
            OutboxItem(r.id, r.incident_id, r.channel, r.target, r.event, json.loads(r.payload), r.attempts,
                       r.idempotency_key)
            for r in rows
        ]  # fmt: skip

    def claim(self, item: OutboxItem, lease: timedelta, now: datetime | None = None) -> bool:
        """Take a lease on one message so two deliverers never send it at the same time."""
        at = now or self.clock()

        def apply(conn: Connection) -> bool:
            res = conn.execute(
                t.outbox.update()
                .where(and_(t.outbox.c.id == item.id, t.outbox.c.status == "pending",
                            t.outbox.c.attempts == item.attempts,
                            or_(t.outbox.c.claimed_until.is_(None), t.outbox.c.claimed_until < at)))
                .values(claimed_until=at + lease)
            )  # fmt: skip
            return res.rowcount == 1

        return bool(self._write(apply))

    def mark_delivered(self, item: OutboxItem, status_code: int, now: datetime | None = None) -> None:
        at = now or self.clock()

        def apply(conn: Connection) -> None:
            conn.execute(
                t.outbox.update().where(t.outbox.c.id == item.id)
                .values(status="delivered", delivered_at=at, attempts=item.attempts + 1, claimed_until=None)
            )  # fmt: skip
            conn.execute(t.timeline.insert(), [self._timeline_row(
                item.incident_id, at, SYSTEM_ACTOR, TimelineKind.NOTIFICATION,
                f"{item.channel} {item.event} delivered (HTTP {status_code}, attempt {item.attempts + 1})",
                {"channel": item.channel, "event": item.event, "outbox_id": item.id},
            )])  # fmt: skip

        self._write(apply)

    def mark_failed(self, item: OutboxItem, error: str, next_attempt_at: datetime, dead: bool,
                    now: datetime | None = None) -> None:  # fmt: skip
        at = now or self.clock()

        def apply(conn: Connection) -> None:
            conn.execute(
                t.outbox.update().where(t.outbox.c.id == item.id)
                .values(status="dead" if dead else "pending", attempts=item.attempts + 1,
                        next_attempt_at=next_attempt_at, last_error=error, claimed_until=None)
            )  # fmt: skip
            if dead or item.attempts == 0:
                what = "gave up" if dead else "failed, will retry"
                conn.execute(t.timeline.insert(), [self._timeline_row(
                    item.incident_id, at, SYSTEM_ACTOR, TimelineKind.NOTIFICATION,
                    f"{item.channel} {item.event} {what}: {error}",
                    {"channel": item.channel, "event": item.event, "outbox_id": item.id},
                )])  # fmt: skip

        self._write(apply)

    def refresh_alertmanager(self, now: datetime | None = None, every: timedelta = timedelta(seconds=60)) -> int:
        """Re-send firing Alertmanager alerts of active incidents (Alertmanager resolves an alert it has
        not heard of for `resolve_timeout`, 5 min by default; its docs ask clients to resend every
        30 s - 3 min). Only incidents that already alerted there, with nothing pending, every `every`."""
        from reliability.incidents.notify import ALERTMANAGER, OutboxMessage, alertmanager_payload

        at = now or self.clock()
        bucket = int(at.timestamp() // every.total_seconds())

        def apply(conn: Connection) -> int:
            active = [str(s) for s in ACTIVE_STATUSES]
            rows = conn.execute(
                select(t.outbox.c.incident_id, t.outbox.c.target, func.max(t.outbox.c.created_at),
                       func.sum(case((t.outbox.c.status == "pending", 1), else_=0)))
                .select_from(t.outbox.join(t.incidents, t.incidents.c.id == t.outbox.c.incident_id))
                .where(and_(t.outbox.c.channel == ALERTMANAGER, t.incidents.c.status.in_(active)))
                .group_by(t.outbox.c.incident_id, t.outbox.c.target)
            ).all()  # fmt: skip
            due = [(inc_id, target) for inc_id, target, last, pending in rows if not pending and last <= at - every]
            count = 0
            for inc_id, target in due:
                inc = self._get_row(conn, inc_id)
                payload = alertmanager_payload(inc.snapshot(), "trigger")
                conn.execute(t.outbox.insert(), self._outbox_rows(
                    [OutboxMessage(ALERTMANAGER, target, "trigger", payload,
                                   f"{inc_id}:{ALERTMANAGER}:{target}:refresh:{bucket}")], inc_id, at,
                ))  # fmt: skip
                count += 1
            return count

        return int(self._write(apply))  # type: ignore[arg-type]

    def outbox_counts(self) -> dict[str, int]:
        with self._read() as conn:
            rows = conn.execute(select(t.outbox.c.status, func.count()).group_by(t.outbox.c.status)).all()
        return {r[0]: r[1] for r in rows}

    # ----------------------------------------------------------------------------------- observations
    def unpublished(self, limit: int = 500) -> list[tuple[Incident, str | None]]:
        """Incidents changed since their last AssetObservations (see detection.publish_observations),
        with the signature those observations had."""
        from reliability.incidents.triage import partitions_by_asset

        with self._read() as conn:
            rows = conn.execute(
                select(t.incidents, t.observation_marks.c.signature.label("_signature"))
                .select_from(t.incidents.outerjoin(t.observation_marks,
                                                   t.observation_marks.c.incident_id == t.incidents.c.id))
                .where(or_(t.observation_marks.c.version.is_(None),
                           t.observation_marks.c.version != t.incidents.c.version))
                .order_by(t.incidents.c.id)
                .limit(limit)
            ).all()  # fmt: skip
            incidents = [(_incident_from_row(r), r._mapping["_signature"]) for r in rows]
            if not incidents:
                return []
            assets: dict[int, list[IncidentAsset]] = {}
            ids = [i.id for i, _ in incidents]
            parts = {i.id: partitions_by_asset(i.blast_radius) for i, _ in incidents}
            for chunk in _chunks(ids):
                for r in conn.execute(select(t.incident_assets).where(t.incident_assets.c.incident_id.in_(chunk))):
                    assets.setdefault(r.incident_id, []).append(
                        IncidentAsset(
                            r.asset_key,
                            r.role,
                            r.depth,
                            r.tier,
                            list(_loads(r.owners, [])),
                            r.kind,  # type: ignore[call-overload]
                            parts[r.incident_id].get(r.asset_key, []),
                        )  # fmt: skip
                    )
        return [(Incident(**{**i.__dict__, "assets": assets.get(i.id, [])}), sig) for i, sig in incidents]

    def mark_published(self, marks: dict[int, tuple[int, str]]) -> None:
        """incident id -> (version, signature) of the observations just written (or skipped)."""

        def apply(conn: Connection) -> None:
            ids = list(marks)
            for chunk in _chunks(ids):
                conn.execute(t.observation_marks.delete().where(t.observation_marks.c.incident_id.in_(chunk)))
            conn.execute(
                t.observation_marks.insert(),
                [{"incident_id": k, "version": v, "signature": sig} for k, (v, sig) in marks.items()],
            )

        if marks:
            self._write(apply)


# --------------------------------------------------------------------------------------------- helpers
def _is_transient(exc: OperationalError) -> bool:
    msg = str(exc.orig).lower() if exc.orig else str(exc).lower()
    return any(s in msg for s in ("locked", "busy", "deadlock", "could not serialize", "connection"))


def _like_escape(text_: str) -> str:
    return text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _detection_data(d: Detection) -> dict[str, object]:
    return {
        "detection_key": d.detection_key,
        "asset_key": d.asset_key,
        "source": str(d.source),
        "signal": d.signal,
        "check_severity": d.check_severity,
        "fault_class": str(d.fault_class),
        "partition": d.partition,
        "partition_keys": list(d.partitions),
        "run_id": d.run_id,
        "description": d.description,
        **({"metadata": d.metadata} if d.metadata else {}),
        **({"blocked_by": list(d.blocked_by)} if d.blocked_by else {}),
    }


def _detection_row(d: Detection, incident_id: int | None, now: datetime) -> dict[str, object]:
    return {
        "detection_key": d.detection_key,
        "incident_id": incident_id,
        "asset_key": d.asset_key,
        "source": str(d.source),
        "signal": d.signal,
        "passed": d.passed,
        "check_severity": d.check_severity,
        "fault_class": str(d.fault_class),
        "partition_key": ",".join(d.partitions) or None,
        "run_id": d.run_id,
        "description": d.description[:4000],
        "occurred_at": d.occurred_at,
        "recorded_at": now,
    }


_JSON_FIELDS = ("owners", "blast_radius", "root_cause")


def _incident_from_values(incident_id: int, values: dict[str, object]) -> Incident:
    """The Incident a freshly inserted row describes (no round trip to the database)."""
    fields = {k: v for k, v in values.items() if k in Incident.__dataclass_fields__}
    for k in _JSON_FIELDS:
        if k in fields:
            fields[k] = json.loads(fields[k])  # type: ignore[arg-type]
    base = dict.fromkeys(("acknowledged_at", "mitigated_at", "resolved_at"))
    return Incident(id=incident_id, **{**base, **fields})  # type: ignore[arg-type]


class _BatchState:
    """Active (and recently resolved) incidents loaded once per ingest transaction, plus the writes
    the batch produces, flushed together at the end (one UPDATE per changed incident)."""

    def __init__(self, policy: GroupingPolicy) -> None:
        self.policy = policy
        self.incidents: dict[int, Incident] = {}
        self.assets: dict[int, set[str]] = {}
        self.failing: dict[int, set[str]] = {}  # root and failing assets per incident
        self.signals: dict[int, dict[str, bool]] = {}
        self.failing_by_signal: dict[str, set[int]] = {}
        self._dirty_signals: dict[tuple[int, str], tuple[bool, datetime, bool]] = {}
        self._views: dict[int, IncidentView] = {}
        self.loaded_versions: dict[int, int] = {}
        self.pending: dict[int, dict[str, object]] = {}
        self.opened: set[int] = set()
        self.det_rows: list[dict] = []
        self.timeline_rows: list[dict] = []
        self.asset_rows: list[dict] = []
        self.role_updates: list[tuple[int, str]] = []
        self.blocked_updates: list[tuple[int, str]] = []  # impacted assets a blocking check kept from building
        self.notify: dict[int, tuple[str, str | None]] = {}

    @classmethod
    def load(cls, conn: Connection, now: datetime, policy: GroupingPolicy, candidates: set[str]) -> _BatchState:
        """Load only the incidents a batch can group with: those touching `candidates` (the detected
        assets plus their lineage neighbours), so ingest cost does not grow with the open backlog."""
        state = cls(policy)
        cutoff = now - policy.reopen_window
        active = [str(s) for s in ACTIVE_STATUSES]
        names = list(candidates)
        ids_found: set[int] = set()
        for chunk in _chunks(names):
            ids_found.update(
                conn.execute(
                    select(t.incident_assets.c.incident_id).where(t.incident_assets.c.asset_key.in_(chunk))
                ).scalars()
            )
            ids_found.update(conn.execute(
                select(t.incidents.c.id).where(t.incidents.c.root_asset.in_(chunk))
            ).scalars())  # fmt: skip
        found = list(ids_found)
        for chunk in _chunks(found):
            rows = conn.execute(
                select(t.incidents).where(and_(
                    t.incidents.c.id.in_(chunk),
                    or_(t.incidents.c.status.in_(active),
                        and_(t.incidents.c.status == str(Status.RESOLVED),
                             t.incidents.c.resolved_at >= cutoff)),
                ))
            ).all()  # fmt: skip
            for r in rows:
                inc = _incident_from_row(r)
                state.incidents[inc.id] = inc
                state.loaded_versions[inc.id] = inc.version
                state.assets[inc.id] = set()
                state.signals[inc.id] = {}
        ids = list(state.incidents)
        for chunk in _chunks(ids):
            for r in conn.execute(
                select(t.incident_assets.c.incident_id, t.incident_assets.c.asset_key, t.incident_assets.c.role).where(
                    t.incident_assets.c.incident_id.in_(chunk)
                )
            ):
                state.assets[r.incident_id].add(r.asset_key)
                if r.role not in ("impacted", "blocked"):
                    state.failing.setdefault(r.incident_id, set()).add(r.asset_key)
            for r in conn.execute(select(t.incident_signals).where(t.incident_signals.c.incident_id.in_(chunk))):
                state.signals[r.incident_id][r.signal_key] = bool(r.failing)
                if r.failing:
                    state.failing_by_signal.setdefault(r.signal_key, set()).add(r.incident_id)
        return state

    # ------------------------------------------------------------------ in-memory changes
    def add(self, inc: Incident, assets: set[str]) -> None:
        self.incidents[inc.id] = inc
        self.assets[inc.id] = set(assets)
        self.failing[inc.id] = {inc.root_asset}
        self.signals.setdefault(inc.id, {})
        self.opened.add(inc.id)
        self._views.pop(inc.id, None)

    def update(self, inc: Incident, values: dict[str, object]) -> Incident:
        """Record column changes for the flush and return the incident as it now is."""
        self.pending.setdefault(inc.id, {}).update(values)
        fields = {k: v for k, v in values.items() if k in Incident.__dataclass_fields__}
        for k in _JSON_FIELDS:
            if k in fields:
                fields[k] = json.loads(fields[k])  # type: ignore[arg-type]
        new = replace(inc, **fields)  # type: ignore[arg-type]
        self.incidents[inc.id] = new
        self._views.pop(inc.id, None)
        return new

    def timeline(self, incident_id: int, at: datetime, actor: str, kind: TimelineKind, message: str,
                 data: dict | None = None) -> None:  # fmt: skip
        self.timeline_rows.append(IncidentStore._timeline_row(incident_id, at, actor, kind, message, data))

    def record(self, plan: TransitionPlan) -> None:
        """Queue the timeline entries of a lifecycle move (its column changes go through `update`)."""
        for r in plan.timeline:
            self.timeline(plan.incident_id, plan.at, plan.actor, r.kind, r.message, dict(r.data))

    def views(self) -> list[IncidentView]:
        from reliability.incidents.grouping import IncidentView

        out = []
        for inc in self.incidents.values():
            view = self._views.get(inc.id)
            if view is None:
                view = self._views[inc.id] = IncidentView(
                    incident_id=inc.id,
                    root_asset=inc.root_asset,
                    assets=frozenset(self.assets.get(inc.id, ())),
                    failing=frozenset(self.failing.get(inc.id, ())),
                    last_detected_at=inc.last_detected_at,
                    active=inc.active,
                    resolved_at=inc.resolved_at,
                )
            out.append(view)
        return out

    def failing_assets(self, inc_id: int) -> set[str]:
        return {k.split("::", 1)[0] for k, failing in self.signals.get(inc_id, {}).items() if failing}

    def incidents_failing_signal(self, signal_key: str) -> list[int]:
        return sorted(i for i in self.failing_by_signal.get(signal_key, ()) if self.incidents[i].active)

    def set_signal(self, inc_id: int, signal_key: str, failing: bool, now: datetime) -> None:
        sigs = self.signals.setdefault(inc_id, {})
        prior = self._dirty_signals.get((inc_id, signal_key))
        is_new = prior[2] if prior else signal_key not in sigs
        sigs[signal_key] = failing
        holders = self.failing_by_signal.setdefault(signal_key, set())
        if failing:
            holders.add(inc_id)
        else:
            holders.discard(inc_id)
        self._dirty_signals[(inc_id, signal_key)] = (failing, now, is_new)
        self._views.pop(inc_id, None)

    def dirty_signal_incidents(self) -> set[int]:
        return {inc_id for inc_id, _ in self._dirty_signals}

    # ------------------------------------------------------------------ flush
    def flush(self, conn: Connection) -> None:
        """Write everything the batch decided, in bulk; optimistic version check per incident."""
        for inc_id, values in self.pending.items():
            version = self.loaded_versions.get(inc_id, 1)
            result = conn.execute(
                t.incidents.update()
                .where(and_(t.incidents.c.id == inc_id, t.incidents.c.version == version))
                .values(**values, version=version + 1)
            )
            if result.rowcount != 1:
                raise _Conflict(f"incident {inc_id} changed concurrently")
            self.incidents[inc_id] = replace(self.incidents[inc_id], version=version + 1)
        if self.asset_rows:
            conn.execute(t.incident_assets.insert(), self.asset_rows)
        for role, updates in (("failing", self.role_updates), ("blocked", self.blocked_updates)):
            if updates:  # impacted assets found failing or blocked since the incident opened
                conn.execute(
                    t.incident_assets.update()
                    .where(and_(t.incident_assets.c.incident_id == bindparam("iid"),
                                t.incident_assets.c.asset_key == bindparam("akey"),
                                t.incident_assets.c.role == "impacted"))
                    .values(role=role),
                    [{"iid": i, "akey": k} for i, k in dict.fromkeys(updates)],
                )  # fmt: skip
        if self.det_rows:
            conn.execute(t.detections.insert(), self.det_rows)
        if self.timeline_rows:
            conn.execute(t.timeline.insert(), self.timeline_rows)
        inserts, updates = [], []
        for (inc_id, key), (failing, at, is_new) in self._dirty_signals.items():
            row = {"incident_id": inc_id, "signal_key": key, "failing": failing, "updated_at": at}
            (inserts if is_new else updates).append(row)
        if inserts:
            conn.execute(t.incident_signals.insert(), inserts)
        if updates:
            conn.execute(
                t.incident_signals.update()
                .where(and_(t.incident_signals.c.incident_id == bindparam("iid"),
                            t.incident_signals.c.signal_key == bindparam("skey")))
                .values(failing=bindparam("fail"), updated_at=bindparam("at")),
                [{"iid": r["incident_id"], "skey": r["signal_key"], "fail": r["failing"], "at": r["updated_at"]}
                 for r in updates],
            )  # fmt: skip
        self._dirty_signals.clear()


__all__ = [
    "IncidentStore", "Incident", "IngestResult", "InvalidTransition", "FaultClass", "StoreUnavailable",
    "default_store_url",
]  # fmt: skip
