"""Did the reconciliation repair the incident? Pure: check results in, a verdict out.

The backfill's runs rebuild the planned partitions and evaluate the checks of every asset they build
(dbt tests, Soda contracts). The incident is repaired when the backfill succeeded, every check the
incident was opened on passed again in it, and no check on a rebuilt partition failed. A signal the
backfill did not evaluate is not taken as passing: the incident stays open and says which.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from reliability.incidents.model import STATUS_CHECKS


@dataclass(frozen=True)
class CheckResult:
    """One check evaluation in a backfill run, as plain values."""

    asset: str
    check: str
    passed: bool
    partition: str | None = None

    @property
    def signal_key(self) -> str:
        """The incident store's signal key of this check (`asset::check`)."""
        return f"{self.asset}::{self.check}"


@dataclass(frozen=True)
class Verdict:
    repaired: bool
    failing: tuple[str, ...]  # signal keys that failed in the backfill (with the partition when known)
    not_evaluated: tuple[str, ...]  # incident signals the backfill never evaluated
    backfill_status: str

    def summary(self) -> str:
        if self.repaired:
            return f"backfill {self.backfill_status}; every check of the incident passed on the rebuilt partitions"
        parts = [f"backfill {self.backfill_status}"]
        if self.failing:
            parts.append("still failing: " + ", ".join(self.failing))
        if self.not_evaluated:
            parts.append("not evaluated by the backfill: " + ", ".join(self.not_evaluated))
        return "; ".join(parts)


CHECK_SIGNAL_PREFIXES = ("run_failure", "freshness")  # signals a successful rebuild itself answers


def judge(incident_signals: Iterable[str], results: Sequence[CheckResult], backfill_succeeded: bool,
          backfill_status: str) -> Verdict:  # fmt: skip
    """The verdict from the incident's signal keys and the backfill's check results (in event order:
    the last result of a check on a partition counts)."""
    latest: dict[tuple[str, str | None], CheckResult] = {}
    for result in results:
        if result.check in STATUS_CHECKS:  # reports the open incident itself: no evidence either way
            continue
        latest[(result.signal_key, result.partition)] = result
    failing = sorted({key + (f" [{part}]" if part else "") for (key, part), r in latest.items() if not r.passed})
    evaluated = {key for key, _ in latest}
    not_evaluated = sorted(
        key for key in set(incident_signals)
        if key not in evaluated and not key.split("::", 1)[-1].startswith(CHECK_SIGNAL_PREFIXES)
    )  # fmt: skip
    repaired = backfill_succeeded and not failing and not not_evaluated
    return Verdict(repaired, tuple(failing), tuple(not_evaluated), backfill_status)
