"""Notifications: routing, payloads (Slack, PagerDuty Events v2, Alertmanager) and delivery.

Payloads are built when the incident changes and written to the outbox in the same transaction
(see `store.py`). They never contain secrets: the outbox row names the environment variable that holds
the webhook URL / routing key, and the deliverer reads it only at send time. Stdlib HTTP only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reliability.incidents.model import format_incident_id

log = logging.getLogger(__name__)

SLACK = "slack"
PAGERDUTY = "pagerduty"
ALERTMANAGER = "alertmanager"
CHANNELS = (SLACK, PAGERDUTY, ALERTMANAGER)

DEFAULT_ENV = {
    SLACK: "RELIABILITY_SLACK_WEBHOOK_URL",
    PAGERDUTY: "RELIABILITY_PAGERDUTY_ROUTING_KEY",
    ALERTMANAGER: "RELIABILITY_ALERTMANAGER_URL",
}
PAGERDUTY_URL_ENV = "RELIABILITY_PAGERDUTY_URL"
PAGERDUTY_DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
DAGSTER_URL_ENV = "RELIABILITY_DAGSTER_URL"  # optional, for links to asset pages

SLACK_HEADER_MAX = 150  # Block Kit limits
SLACK_FIELD_MAX = 2000
SLACK_TEXT_MAX = 3000


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


PD_SEVERITY = {"SEV1": "critical", "SEV2": "error", "SEV3": "warning", "SEV4": "info"}
PD_SUMMARY_MAX = 1024
PD_DEDUP_MAX = 255


@dataclass(frozen=True)
class IncidentSnapshot:
    """The incident as a notification sees it."""

    incident_id: int
    version: int
    title: str
    status: str
    severity: str
    root_asset: str
    fault_class: str
    owners: tuple[str, ...]
    detected_at: datetime
    resolved_at: datetime | None
    blast_radius: Mapping[str, object]
    previous_severity: str | None = None  # set when this change escalated the severity

    @property
    def display_id(self) -> str:
        return format_incident_id(self.incident_id)


@dataclass(frozen=True)
class OutboxMessage:
    channel: str
    target: str  # env var NAME of the secret (URL or routing key)
    event: str  # trigger | acknowledge | resolve
    payload: object
    idempotency_key: str


@dataclass(frozen=True)
class Route:
    """Send incidents matching `severities` (empty = any) and `owners` (empty = any) to `channels`."""

    channels: tuple[str, ...]
    severities: frozenset[str] = frozenset()
    owners: frozenset[str] = frozenset()
    targets: Mapping[str, str] = field(default_factory=dict)  # channel -> env var name override

    def matches(self, snap: IncidentSnapshot) -> bool:
        if self.severities and snap.severity not in self.severities:
            return False
        return not (self.owners and not (self.owners & set(snap.owners)))


DEFAULT_ROUTES: tuple[Route, ...] = (
    Route(channels=(PAGERDUTY, SLACK, ALERTMANAGER), severities=frozenset({"SEV1", "SEV2"})),
    Route(channels=(SLACK, ALERTMANAGER)),
)


@dataclass(frozen=True)
class Router:
    """Every matching route contributes its channels; a channel is used only if its env var is set."""

    routes: tuple[Route, ...] = DEFAULT_ROUTES
    environ: Mapping[str, str] | None = None  # None = os.environ at planning time

    def targets_for(self, snap: IncidentSnapshot) -> list[tuple[str, str]]:
        env = os.environ if self.environ is None else self.environ
        out: dict[tuple[str, str], None] = {}
        for route in self.routes:
            if route.matches(snap):
                for channel in route.channels:
                    target = route.targets.get(channel, DEFAULT_ENV[channel])
                    if env.get(target):
                        out[(channel, target)] = None
        return list(out)

    def plan(
        self, snap: IncidentSnapshot, event: str, already_notified: Sequence[tuple[str, str]] = ()
    ) -> list[OutboxMessage]:
        """Messages for one incident change. Receivers that already heard about this incident
        (`already_notified`) always hear about its acknowledgement and resolution too, even when
        the process making the change (e.g. the CLI) does not have their secrets in its environment:
        the deliverer that has them sends it."""
        targets = dict.fromkeys(self.targets_for(snap))
        for channel_target in already_notified:
            targets.setdefault(channel_target, None)
        messages = []
        for channel, target in targets:
            if channel == ALERTMANAGER and event == "acknowledge":
                continue  # Alertmanager has no acknowledgement: the alert stays firing
            if channel == SLACK:
                payload: object = slack_payload(snap, event)
            elif channel == PAGERDUTY:
                payload = pagerduty_payload(snap, event)
            else:
                payload = alertmanager_payload(snap, event)
            key = f"{snap.incident_id}:{channel}:{target}:{event}:v{snap.version}"
            messages.append(OutboxMessage(channel, target, event, payload, key))
        return messages


def routes_from_config(raw: Sequence[Mapping[str, object]]) -> tuple[Route, ...]:
    """Routes from the `routing:` list of the incidents config (see config.py)."""
    routes = []
    for item in raw:
        channels = tuple(str(c) for c in item.get("channels", ()))  # type: ignore[union-attr]
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown notification channel(s) {unknown}; known: {list(CHANNELS)}")
        routes.append(
            Route(
                channels=channels,
                severities=frozenset(str(s).upper() for s in item.get("severities", ())),  # type: ignore[union-attr]
                owners=frozenset(str(o) for o in item.get("owners", ())),  # type: ignore[union-attr]
                targets={str(k): str(v) for k, v in dict(item.get("targets", {})).items()},  # type: ignore[arg-type]
            )
        )
    return tuple(routes)


# ----------------------------------------------------------------------------------------------- payloads
def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def slack_escape(text: str) -> str:
    """Slack mrkdwn control characters (&, <, >) escaped so hostile names render verbatim."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _asset_link(asset_key: str) -> str | None:
    base = os.environ.get(DAGSTER_URL_ENV)
    if not base:
        return None
    from urllib.parse import quote

    return f"{base.rstrip('/')}/assets/{quote(asset_key, safe='/')}"


def _headline(snap: IncidentSnapshot, event: str) -> str:
    verb = {"trigger": "opened", "acknowledge": "acknowledged", "resolve": "resolved"}.get(event, event)
    if event == "trigger" and snap.previous_severity:
        verb = f"escalated {snap.previous_severity} -> {snap.severity}"
    elif event == "trigger" and snap.status == "reopened":
        verb = "reopened"
    return f"[{snap.severity}] {snap.display_id} {verb}: {snap.title}"


def _impact_line(snap: IncidentSnapshot) -> str:
    br = snap.blast_radius
    exposures = list(br.get("exposures", []) or [])  # type: ignore[call-overload]
    line = f"{br.get('downstream_count', 0)} downstream asset(s)"
    if exposures:
        line += "; exposures: " + ", ".join(str(e) for e in exposures)
    return line


def slack_payload(snap: IncidentSnapshot, event: str) -> dict[str, object]:
    """Slack incoming webhook: `{text, blocks}` (text is the notification fallback)."""
    head = slack_escape(_headline(snap, event))
    fields = [
        f"*Status:* {snap.status}",
        f"*Severity:* {snap.severity}",
        f"*Root asset:* `{slack_escape(snap.root_asset)}`",
        f"*Fault:* {snap.fault_class}",
        f"*Owners:* {slack_escape(', '.join(snap.owners) or '-')}",
        f"*Impact:* {slack_escape(_impact_line(snap))}",
    ]
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _headline(snap, event)[:SLACK_HEADER_MAX]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _clip(f, SLACK_FIELD_MAX)} for f in fields]},
    ]
    link = _asset_link(snap.root_asset)
    if link:
        text = f"<{link}|Open the root asset in Dagster>"
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    return {"text": _clip(head, SLACK_TEXT_MAX), "blocks": blocks}


def pagerduty_dedup_key(incident_id: int) -> str:
    return f"reliability/{format_incident_id(incident_id)}"[:PD_DEDUP_MAX]


def pagerduty_payload(snap: IncidentSnapshot, event: str) -> dict[str, object]:
    """PagerDuty Events API v2 body without `routing_key` (added at send time)."""
    body: dict[str, object] = {
        "event_action": event,
        "dedup_key": pagerduty_dedup_key(snap.incident_id),
    }
    if event == "trigger":
        summary = _headline(snap, event)
        body["payload"] = {
            "summary": summary[:PD_SUMMARY_MAX],
            "source": snap.root_asset or "reliability",
            "severity": PD_SEVERITY.get(snap.severity, "critical"),
            "timestamp": _iso(snap.detected_at),
            "component": snap.root_asset,
            "group": ", ".join(snap.owners) or "unowned",
            "class": snap.fault_class,
            "custom_details": {
                "incident_id": snap.display_id,
                "status": snap.status,
                "owners": list(snap.owners),
                "impact": _impact_line(snap),
                "exposures": list(snap.blast_radius.get("exposures", []) or []),  # type: ignore[call-overload]
            },
        }
        link = _asset_link(snap.root_asset)
        if link:
            body["links"] = [{"href": link, "text": "Root asset in Dagster"}]
    return body


def alertmanager_payload(snap: IncidentSnapshot, event: str) -> list[dict[str, object]]:
    """Alertmanager `/api/v2/alerts` body: a list of alerts; labels are the identity."""

    def alert(severity: str, ends_at: datetime | None) -> dict[str, object]:
        a: dict[str, object] = {
            "labels": {
                "alertname": "DataIncident",
                "incident_id": snap.display_id,
                "severity": severity.lower(),
            },
            "annotations": {
                "summary": _headline(snap, event),
                "root_asset": snap.root_asset,
                "owners": ", ".join(snap.owners),
                "impact": _impact_line(snap),
            },
            "startsAt": _iso(snap.detected_at),
        }
        if ends_at is not None:
            a["endsAt"] = _iso(ends_at)
        link = _asset_link(snap.root_asset)
        if link:
            a["generatorURL"] = link
        return a

    if event == "resolve":
        return [alert(snap.severity, snap.resolved_at or snap.detected_at)]
    alerts = [alert(snap.severity, None)]
    if snap.previous_severity and snap.previous_severity != snap.severity:
        # the old severity is another identity: end it, or it would linger until it times out
        alerts.append(alert(snap.previous_severity, snap.detected_at))
    return alerts


# ----------------------------------------------------------------------------------------------- delivery
class DeliveryError(Exception):
    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return re.sub(r"https?://\S+", "<url>", text)


def backoff(attempts: int, base: float = 2.0, cap: float = 300.0) -> timedelta:
    """Exponential backoff after `attempts` failed attempts: 2 s, 4 s, 8 s ... capped at 5 min."""
    return timedelta(seconds=min(cap, base * (2 ** max(0, attempts - 1))))


def send(
    channel: str, target: str, payload: object, environ: Mapping[str, str] | None = None, timeout: float = 5.0
) -> int:
    """POST one message. Returns the HTTP status; raises DeliveryError (message free of secrets)."""
    env = os.environ if environ is None else environ
    secret = env.get(target, "")
    if not secret:
        raise DeliveryError(f"{target} is not set", retryable=True)
    secrets = [secret]
    if channel == SLACK:
        url, body = secret, payload
    elif channel == PAGERDUTY:
        url = env.get(PAGERDUTY_URL_ENV) or PAGERDUTY_DEFAULT_URL
        body = {"routing_key": secret, **dict(payload)}  # type: ignore[call-overload]
    elif channel == ALERTMANAGER:
        url, body = secret.rstrip("/") + "/api/v2/alerts", payload
    else:
        raise DeliveryError(f"unknown channel {channel}", retryable=False)
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        retryable = exc.code == 429 or exc.code >= 500
        raise DeliveryError(f"{channel}: HTTP {exc.code}", retryable=retryable) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{channel}: {redact(str(reason), secrets)}", retryable=True) from None


@dataclass
class DeliveryReport:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    deferred: int = 0  # skipped this pass: its receiver already failed in this pass, or out of time

    def to_dict(self) -> dict[str, int]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "dead": self.dead,
            "deferred": self.deferred,
        }


def deliver_due(
    store,  # noqa: ANN001 - IncidentStore (import cycle otherwise)
    *,
    now: datetime | None = None,
    budget_s: float = 5.0,
    limit: int = 200,
    environ: Mapping[str, str] | None = None,
    timeout: float = 3.0,
) -> DeliveryReport:
    """Send due outbox messages once each, in order per incident and receiver.

    A receiver that fails is skipped for the rest of the pass (so a dead endpoint costs one timeout,
    not one per message) and its message is retried later with exponential backoff; nothing is dropped
    unless the receiver refuses it outright (HTTP 4xx other than 429), which marks it dead.
    """
    import time as _time

    started = _time.monotonic()
    report = DeliveryReport()
    failed_targets: set[tuple[str, str]] = set()
    progress = True
    while progress and _time.monotonic() - started <= budget_s:
        # another round only if this one freed messages queued behind delivered ones
        progress = False
        for item in store.due_outbox(now=now, limit=limit):
            at = now or store.clock()
            if (item.channel, item.target) in failed_targets or _time.monotonic() - started > budget_s:
                report.deferred += 1
                continue
            if not (os.environ if environ is None else environ).get(item.target):
                report.deferred += 1  # this process lacks the secret: leave it to one that has it
                continue
            if not store.claim(item, lease=timedelta(seconds=timeout * 4 + 10), now=at):
                continue  # another deliverer has it
            try:
                status = send(item.channel, item.target, item.payload, environ=environ, timeout=timeout)
            except DeliveryError as exc:
                failed_targets.add((item.channel, item.target))
                dead = not exc.retryable
                store.mark_failed(item, str(exc), at + backoff(item.attempts + 1), dead=dead, now=at)
                log.warning("notification %s via %s failed (attempt %d): %s", item.id, item.channel,
                            item.attempts + 1, exc)  # fmt: skip
                if dead:
                    report.dead += 1
                else:
                    report.retrying += 1
                continue
            store.mark_delivered(item, status, now=at)
            log.info("notification %s delivered via %s (%s)", item.id, item.channel, item.event)
            report.delivered += 1
            progress = True
    return report
