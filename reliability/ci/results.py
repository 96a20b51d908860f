"""What one check run found, as plain data, and the exit code policy. Pure: no Dagster, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

FAIL_ON_LEVELS = ("error", "warn")
MAX_FAILING_ROWS = 20  # rows shown per failing check in JUnit/JSON/Markdown

# measured value / threshold as the platform's check metadata names them (Soda, then dbt)
_MEASURED_KEYS = ("measured_value", "rows_failed", "dagster_dbt/failed_row_count")
_THRESHOLD_KEYS = ("threshold",)


@dataclass(frozen=True)
class CheckResult:
    """One asset check's verdict, whatever ran it (dbt test, Soda contract, the CI's own checks)."""

    asset: str
    check: str
    passed: bool
    severity: str = "error"  # severity of a failure: "error" or "warn"
    description: str = ""
    source: str = "dagster"  # "dbt", "soda", "ci" ...
    measured: Any = None
    threshold: Any = None
    failing_rows: tuple[Mapping[str, Any], ...] = ()
    contract: str | None = None  # the Soda contract file, for a contract's check
    partition: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    skipped: str | None = None  # why the check could not run (it runs only with its asset's materialization)

    @property
    def name(self) -> str:
        """`asset:check`: unique across assets (Soda check names repeat per table)."""
        return f"{self.asset}:{self.check}"

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.passed:
            return "passed"
        return "warn" if self.severity == "warn" else "failed"

    def fails_run(self, fail_on: str) -> bool:
        """Whether this result fails a run at `--fail-on` level: `error` counts errors, `warn` both."""
        return not self.passed and not self.skipped and (self.severity == "error" or fail_on == "warn")

    def to_dict(self) -> dict[str, Any]:
        return {
            "asset": self.asset,
            "check": self.check,
            "status": self.status,
            "passed": self.passed,
            "severity": self.severity,
            "source": self.source,
            "description": self.description,
            "measured_value": self.measured,
            "threshold": self.threshold,
            "contract": self.contract,
            "partition": self.partition,
            "failing_rows": [dict(r) for r in self.failing_rows[:MAX_FAILING_ROWS]],
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def check_fail_on(value: str) -> str:
    if value not in FAIL_ON_LEVELS:
        raise ValueError(f"--fail-on must be one of {', '.join(FAIL_ON_LEVELS)}, got {value!r}")
    return value


def exit_code(results: Iterable[CheckResult], fail_on: str = "error") -> int:
    """0 when nothing fails at or above `fail_on`, else 1 (2, for usage errors, is the CLI's)."""
    check_fail_on(fail_on)
    return 1 if any(r.fails_run(fail_on) for r in results) else 0


def counts(results: Sequence[CheckResult]) -> dict[str, int]:
    return {
        "total": len(results),
        "passed": sum(r.status == "passed" for r in results),
        "failed": sum(r.status == "failed" for r in results),
        "warn": sum(r.status == "warn" for r in results),
        "skipped": sum(r.status == "skipped" for r in results),
    }


def _first(metadata: Mapping[str, Any], keys: Sequence[str]) -> Any:
    return next((metadata[k] for k in keys if metadata.get(k) is not None), None)


def result_from_evaluation(
    asset: str,
    check: str,
    passed: bool,
    severity: str,
    description: str | None,
    metadata: Mapping[str, Any],
    failing_rows: Sequence[Mapping[str, Any]] = (),
    partition: str | None = None,
) -> CheckResult:
    """A result from a check evaluation's plain metadata: dbt tests carry `unique_id`, Soda checks
    `soda_check` and `contract`. A dbt test's threshold is dbt's own (`error_if`, `!= 0` by default)."""
    source = "soda" if "soda_check" in metadata else "dbt" if "unique_id" in metadata else "dagster"
    threshold = _first(metadata, _THRESHOLD_KEYS)
    if threshold is None and source == "dbt":
        threshold = "failing rows != 0"
    measured = _first(metadata, _MEASURED_KEYS)
    text = description or ""
    if not text and source == "dbt":
        text = f"dbt test {metadata.get('status', 'pass' if passed else 'fail')}" + (
            f", {measured} failing row(s)" if measured is not None else ""
        )
    return CheckResult(
        asset=asset,
        check=check,
        passed=passed,
        severity="warn" if severity == "warn" else "error",
        description=text,
        source=source,
        measured=measured,
        threshold=threshold,
        failing_rows=tuple(failing_rows[:MAX_FAILING_ROWS]),
        contract=metadata.get("contract"),
        partition=partition,
        metadata=dict(metadata),
    )
