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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from reliability.incidents.model import Severity, format_incident_id

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


ROUTE_FIELDS = ("channels", "severities", "owners", "targets")


def _str_list(item: Mapping[str, object], key: str, where: str) -> list[str]:
    value = item.get(key, [])
    if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{where}.{key}: expected a list of strings, got {value!r}")
    return value


def routes_from_config(raw: object) -> tuple[Route, ...]:
    """Routes from the `routing:` list of the incidents config (see config.py).

    Anything unknown (a channel, a severity such as SEV9, a field, a target for a channel the route does
    not use) is refused with its place named (`routing[1].severities`), so no route silently never matches.
    """
    if not isinstance(raw, list):
        raise ValueError(f"routing: expected a list of routes, got {type(raw).__name__}")
    routes = []
    for index, item in enumerate(raw):
        where = f"routing[{index}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected a mapping with {list(ROUTE_FIELDS)}, got {item!r}")
        unknown_fields = sorted(set(item) - set(ROUTE_FIELDS))
        if unknown_fields:
            raise ValueError(f"{where}: unknown field(s) {unknown_fields}; known: {list(ROUTE_FIELDS)}")
        channels = tuple(_str_list(item, "channels", where))
        if not channels:
            raise ValueError(f"{where}.channels: name at least one of {list(CHANNELS)}")
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"{where}.channels: unknown notification channel(s) {unknown}; known: {list(CHANNELS)}")
        severities = [s.upper() for s in _str_list(item, "severities", where)]
        known = [str(s) for s in Severity]
        bad = [s for s in severities if s not in known]
        if bad:
            raise ValueError(f"{where}.severities: unknown severity {bad}; known: {known}")
        targets = item.get("targets", {})
        if not isinstance(targets, dict):
            raise ValueError(f"{where}.targets: expected a mapping of channel -> environment variable name")
        for channel, variable in targets.items():
            if channel not in channels:
                raise ValueError(f"{where}.targets.{channel}: not one of this route's channels {list(channels)}")
            if not isinstance(variable, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", variable):
                raise ValueError(f"{where}.targets.{channel}: expected an environment variable name, got "
                                 f"{variable!r}")  # fmt: skip
        routes.append(
            Route(
                channels=channels,
                severities=frozenset(severities),
                owners=frozenset(_str_list(item, "owners", where)),
                targets=dict(targets),
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


def url_problem(value: str) -> str | None:
    """What is wrong with a webhook / base URL, in words that never repeat the value (it is a secret)."""
    from urllib.parse import urlsplit

    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "contains whitespace or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https"):
        return "is not an http:// or https:// URL"
    if not parts.hostname:
        return "has no host name"
    return None


def channel_setting_errors(routes: Sequence[Route], environ: Mapping[str, str] | None = None) -> list[str]:
    """Problems with the channel variables these routes use, each naming the variable, never its value.

    Unset variables are fine (that channel is simply not used); set but malformed ones are not.
    """
    env = os.environ if environ is None else environ
    errors: dict[str, None] = {}
    variables: dict[tuple[str, str], None] = {}
    for route in routes:
        for channel in route.channels:
            variables[(channel, route.targets.get(channel, DEFAULT_ENV[channel]))] = None
    if any(channel == PAGERDUTY for channel, _ in variables):
        variables[("url", PAGERDUTY_URL_ENV)] = None
    for channel, name in variables:
        value = env.get(name)
        if not value:
            continue
        if channel == PAGERDUTY:
            if any(ch.isspace() or ord(ch) < 32 for ch in value):
                errors[f"{name} (PagerDuty routing key) contains whitespace or control characters"] = None
            continue
        problem = url_problem(value)
        if problem:
            errors[f"{name} {problem} (the value is not shown: it is a secret)"] = None
    return list(errors)


def configured_channels(
    routes: Sequence[Route], environ: Mapping[str, str] | None = None, only_set: bool = True
) -> list[str]:
    """The environment variables of the routes' channels (`only_set`: those set here), in route order."""
    env = os.environ if environ is None else environ
    names = {route.targets.get(c, DEFAULT_ENV[c]): None for route in routes for c in route.channels}
    return [n for n in names if env.get(n) or not only_set]


def check_channel_settings(routes: Sequence[Route], environ: Mapping[str, str] | None = None) -> None:
    """Fail at start-up (CLI, code location load) on a malformed channel variable, by name."""
    from reliability.errors import ConfigError

    errors = channel_setting_errors(routes, environ)
    if errors:
        raise ConfigError("notification settings: " + "; ".join(errors))


def _split_credentials(url: str) -> tuple[str, dict[str, str], list[str]]:
    """`https://user:pass@host/...` -> the URL without them, a Basic auth header, and the secrets to redact.

    urllib would otherwise put `user:pass@host` in the Host header and fail with the password in the error.
    """
    import base64
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, {}, []
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    netloc = parts.hostname or ""
    if ":" in netloc:
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc += f":{parts.port}"
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    bare = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, {"Authorization": f"Basic {token}"}, [s for s in (user, password, token) if s]


def send(
    channel: str, target: str, payload: object, environ: Mapping[str, str] | None = None, timeout: float = 5.0
) -> int:
    """POST one message. Returns the HTTP status; raises DeliveryError only (message free of secrets)."""
    import urllib.error
    import urllib.request

    env = os.environ if environ is None else environ
    secret = env.get(target, "")
    if not secret:
        raise DeliveryError(f"{target} is not set", retryable=True)
    secrets = [secret]
    if channel == SLACK:
        url_var, url, body = target, secret, payload
    elif channel == PAGERDUTY:
        url_var, url = PAGERDUTY_URL_ENV, env.get(PAGERDUTY_URL_ENV) or PAGERDUTY_DEFAULT_URL
        body = {"routing_key": secret, **dict(payload)}  # type: ignore[call-overload]
    elif channel == ALERTMANAGER:
        url_var, url, body = target, secret.rstrip("/") + "/api/v2/alerts", payload
    else:
        raise DeliveryError(f"unknown channel {channel}", retryable=False)
    problem = url_problem(url)
    if problem:  # a configuration error: kept for retry, so fixing the variable delivers it
        raise DeliveryError(f"{channel}: {url_var} {problem}", retryable=True)
    secrets.append(url)
    try:
        url, auth, more_secrets = _split_credentials(url)
        secrets += more_secrets
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json", **auth}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        retryable = exc.code == 429 or exc.code >= 500
        raise DeliveryError(f"{channel}: HTTP {exc.code}", retryable=retryable) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"{channel}: {redact(str(reason), secrets)}", retryable=True) from None
    except Exception as exc:  # noqa: BLE001 - e.g. http.client.InvalidURL: its text may quote the secret
        raise DeliveryError(f"{channel}: {type(exc).__name__} sending to {url_var} (details withheld: they may "
                            "contain the secret)", retryable=True) from None  # fmt: skip


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
