"""What the `open_incident` asset check says on each asset: failing while an incident covering the
asset is active, passing once the last one resolved. Pure: incidents in, check states out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from reliability.incidents.model import ACTIVE_STATUSES, Severity, Status

RUN_TAG = "reliability/incident"


@dataclass(frozen=True)
class IncidentCheckState:
    asset: str
    passed: bool
    incident_id: str
    severity: str
    status: str
    role: str
    root_asset: str
    title: str

    @property
    def description(self) -> str:
        if self.passed:
            return f"{self.incident_id} {self.status}: no open incident on this asset"
        return f"{self.incident_id} [{self.severity}, {self.status}] ({self.role}): {self.title}"[:500]

    def metadata(self, dagster_url: str) -> dict[str, str]:
        runs = f"{dagster_url.rstrip('/')}/runs?q%5B0%5D=" + quote(f"tag:{RUN_TAG}={self.incident_id}", safe="")
        return {
            "incident_id": self.incident_id,
            "incident_severity": self.severity,
            "incident_status": self.status,
            "incident_role": self.role,
            "incident_root_asset": self.root_asset,
            "incident_link": runs,
            "incident_command": f"reliability incidents show {self.incident_id}",
        }

    def same_as(self, metadata: Mapping[str, Any], passed: bool) -> bool:
        """Whether an evaluation already reported says the same (then it is not reported again)."""

        def text(key: str) -> str | None:
            value = metadata.get(key)
            return None if value is None else str(getattr(value, "value", value))

        return passed == self.passed and all(
            text(k) == v for k, v in (("incident_id", self.incident_id), ("incident_status", self.status),
                                       ("incident_severity", self.severity))
        )  # fmt: skip


def check_states(incidents: Iterable[Any]) -> dict[str, IncidentCheckState]:
    """Per asset: the worst active incident covering it (failing), else its latest resolved one
    (passing). `incidents` carry id, status, severity, title, root_asset and assets (key, role)."""
    best: dict[str, tuple[tuple, IncidentCheckState]] = {}
    for inc in incidents:
        active = Status(inc.status) in ACTIVE_STATUSES
        for a in inc.assets:
            if a.asset_key.startswith("job:"):
                continue
            state = IncidentCheckState(a.asset_key, not active, f"INC-{inc.id}", inc.severity, inc.status, a.role,
                                       inc.root_asset, inc.title)  # fmt: skip
            rank = (0 if active else 1, Severity(inc.severity).rank if active else 0, -inc.id)
            current = best.get(a.asset_key)
            if current is None or rank < current[0]:
                best[a.asset_key] = (rank, state)
    return {k: v for k, (_, v) in best.items()}
