"""A local HTTP receiver that validates Slack, PagerDuty Events v2 and Alertmanager payloads.

It answers like the real services (Slack 200 "ok", PagerDuty 202, Alertmanager 200) and records each
valid request; an invalid payload is answered 400 and recorded in `errors`, so tests can assert none.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}


def _iso(value: object) -> None:
    assert isinstance(value, str) and value.endswith("Z"), value
    datetime.fromisoformat(value.replace("Z", "+00:00"))


def validate_slack(body: object) -> None:
    assert isinstance(body, dict) and set(body) <= {"text", "blocks"}, body
    assert isinstance(body["text"], str) and 0 < len(body["text"]) <= 3000
    assert isinstance(body["blocks"], list) and body["blocks"]
    for block in body["blocks"]:
        assert block["type"] in {"header", "section", "context", "divider"}
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if "fields" in block:
            assert len(block["fields"]) <= 10
            assert all(f["type"] == "mrkdwn" and 0 < len(f["text"]) <= 2000 for f in block["fields"])


def validate_pagerduty(body: object, routing_key: str) -> None:
    assert isinstance(body, dict)
    assert body["routing_key"] == routing_key
    assert body["event_action"] in PD_ACTIONS
    assert isinstance(body["dedup_key"], str) and 0 < len(body["dedup_key"]) <= 255
    assert set(body) <= {"routing_key", "event_action", "dedup_key", "payload", "links", "images", "client",
                         "client_url"}  # fmt: skip
    if body["event_action"] == "trigger":
        p = body["payload"]
        assert isinstance(p["summary"], str) and 0 < len(p["summary"]) <= 1024
        assert isinstance(p["source"], str) and p["source"]
        assert p["severity"] in PD_SEVERITIES
        _iso(p["timestamp"])
        assert set(p) <= {"summary", "source", "severity", "timestamp", "component", "group", "class",
                          "custom_details"}  # fmt: skip
        for link in body.get("links", []):
            assert set(link) <= {"href", "text"} and link["href"].startswith("http")


def validate_alertmanager(body: object) -> None:
    assert isinstance(body, list) and body
    for alert in body:
        assert set(alert) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}, alert
        assert alert["labels"] and all(isinstance(k, str) and isinstance(v, str) for k, v in alert["labels"].items())
        assert all(isinstance(v, str) for v in alert.get("annotations", {}).values())
        _iso(alert["startsAt"])
        if "endsAt" in alert:
            _iso(alert["endsAt"])


class Receiver:
    """Routes: /slack/<token> (Slack), /v2/enqueue (PagerDuty), /api/v2/alerts (Alertmanager)."""

    def __init__(self, routing_key: str, port: int = 0) -> None:
        self.routing_key = routing_key
        self.requests: list[tuple[str, object]] = []
        self.errors: list[str] = []
        self.authorizations: list[str | None] = []  # the Authorization header of each request
        self.fail_with: int | None = None  # answer this status instead (e.g. 503) while set
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                receiver.authorizations.append(self.headers.get("Authorization"))
                if receiver.fail_with:
                    self._answer(receiver.fail_with, b"down")
                    return
                try:
                    assert self.headers.get("Content-Type") == "application/json"
                    body = json.loads(raw)
                    if self.path.startswith("/slack/"):
                        validate_slack(body)
                        kind, status, answer = "slack", 200, b"ok"
                    elif self.path == "/v2/enqueue":
                        validate_pagerduty(body, receiver.routing_key)
                        kind, status = "pagerduty", 202
                        answer = json.dumps({"status": "success", "dedup_key": body["dedup_key"]}).encode()
                    elif self.path == "/api/v2/alerts":
                        validate_alertmanager(body)
                        kind, status, answer = "alertmanager", 200, b""
                    else:
                        raise AssertionError(f"unexpected path {self.path}")
                except (AssertionError, KeyError, ValueError, TypeError) as exc:
                    receiver.errors.append(f"{self.path}: {exc!r}")
                    self._answer(400, b"invalid")
                    return
                receiver.requests.append((kind, body))
                self._answer(status, answer)

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def of(self, kind: str) -> list[object]:
        return [body for k, body in self.requests if k == kind]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
