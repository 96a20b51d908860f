"""Soda check results -> platform check outcomes (pure: no Soda, Dagster or DuckDB here).

Policy, per Soda outcome:
- PASSED -> passed.
- FAILED -> failed at the check's severity (ERROR unless the contract sets `dagster_severity: warn`).
- WARN (a `level: warn` threshold was crossed) -> failed at WARN; never blocks.
- NOT_EVALUATED / missing from Soda's answer / a column the check reads is gone -> failed at ERROR:
  a rule that could not be verified must not let bad data through silently.
Blocking (decided in `spec`): every ERROR check blocks its downstream in the same run unless the
contract sets `dagster_blocking: false`.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reliability.contracts.spec import WINDOW_END_VARIABLE, WINDOW_START_VARIABLE, CheckSpec
from reliability.partitions import partition_window

PASSED, FAILED, WARN, NOT_EVALUATED, EXCLUDED = "PASSED", "FAILED", "WARN", "NOT_EVALUATED", "EXCLUDED"
MAX_TEXT = 200  # characters kept of one sampled value


@dataclass(frozen=True)
class SodaRecord:
    """The parts of one Soda `CheckResult` the platform uses, as plain values."""

    path: str
    outcome: str
    value: float | int | None
    threshold: str
    diagnostics: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The result of one platform check, ready to become a Dagster AssetCheckResult."""

    check: CheckSpec
    passed: bool
    severity: str  # "error" | "warn"
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    sample: list[dict[str, Any]] | None = None

    @property
    def wants_sample(self) -> bool:
        return (
            not self.passed
            and self.check.kind in ("missing", "invalid", "duplicate")
            and (self.metadata.get("soda_outcome") in (FAILED, WARN))
        )


def plain(value: Any) -> Any:
    """A JSON-friendly rendering of a DuckDB/Soda value."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) or len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return float(value) if value == value.to_integral_value() or abs(value) < 1e15 else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    return plain(str(value))


def outcome_from_soda(check: CheckSpec, record: SodaRecord | None, contract_path: Path, errors: str = "") -> Outcome:
    """Map one Soda result (or its absence) to an outcome, following the module's policy."""
    base: dict[str, Any] = {
        "contract": str(contract_path),
        "soda_check": check.soda_path,
        "check_type": check.kind,
    }
    if check.column is not None:
        base["column"] = check.column
    if record is None or record.outcome in (NOT_EVALUATED, EXCLUDED):
        reason = errors.strip() or (
            "Soda did not evaluate this check" if record else "Soda returned no result for this check"
        )
        if record is None:
            reason += "; was the contract changed after the code location loaded? Reload it."
        base["soda_outcome"] = record.outcome if record else "MISSING"
        base["error"] = reason[:2000]
        return Outcome(check, False, "error", f"{contract_path}: {check.soda_path} not verified: {reason}"[:2000], base)
    base["soda_outcome"] = record.outcome
    base["measured_value"] = plain(record.value)
    base["threshold"] = record.threshold or check.threshold
    for key, value in sorted(record.diagnostics.items()):
        base[f"soda_{key}"] = plain(value)
    if record.outcome == PASSED:
        return Outcome(check, True, check.severity, f"{check.title}: passed (value {plain(record.value)})", base)
    severity = "warn" if record.outcome == WARN else check.severity
    verdict = "warning" if record.outcome == WARN else "failed"
    text = f"{check.title}: {verdict}, value {plain(record.value)} breaks threshold [{base['threshold']}]"
    return Outcome(check, False, severity, text, base)


def column_gone_outcome(check: CheckSpec, contract_path: Path, table: str, gone: Sequence[str]) -> Outcome:
    """A check that reads a column the table no longer has: failed, without asking Soda."""
    names = ", ".join(f"'{c}'" for c in gone)
    text = f"{contract_path}: column {names} declared in the contract is not in table '{table}'"
    metadata = {
        "contract": str(contract_path),
        "soda_check": check.soda_path,
        "check_type": check.kind,
        "soda_outcome": NOT_EVALUATED,
        "error": text,
        "missing_columns": list(gone),
    }
    return Outcome(check, False, "error", text, metadata)


def all_failed(checks: Iterable[CheckSpec], contract_path: Path, problem: str) -> list[Outcome]:
    """Every check failed for one reason (table missing, warehouse unreadable, contract broken)."""
    text = f"{contract_path}: {problem}"
    return [
        Outcome(
            c,
            False,
            "error",
            text,
            {"contract": str(contract_path), "soda_check": c.soda_path, "error": text},
        )
        for c in checks
    ]


_TYPE_SYNONYMS = {
    "text": "varchar",
    "string": "varchar",
    "char": "varchar",
    "bpchar": "varchar",
    "numeric": "decimal",
    "int8": "bigint",
    "long": "bigint",
    "int": "integer",
    "int4": "integer",
    "float8": "double",
    "timestamp without time zone": "timestamp",
    "datetime": "timestamp",
    "timestamp with time zone": "timestamptz",
    "timestamp_tz": "timestamptz",
    "bool": "boolean",
}


def _base_type(data_type: str) -> str:
    base = data_type.split("(", 1)[0].strip().lower()
    return _TYPE_SYNONYMS.get(base, base)


def schema_diff(declared: Mapping[str, str | None], actual: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """What differs between a contract's columns and the table's: shown next to a failed schema check."""
    # DuckDB matches identifiers case-insensitively, even quoted ones
    actual_types = {name.casefold(): (name, data_type) for name, data_type in actual}
    declared_folded = {c.casefold() for c in declared}
    missing = [c for c in declared if c.casefold() not in actual_types]
    unexpected = [name for key, (name, _) in actual_types.items() if key not in declared_folded]
    mismatched = {
        c: {"expected": t, "actual": actual_types[c.casefold()][1]}
        for c, t in declared.items()
        if t is not None and c.casefold() in actual_types and _base_type(t) != _base_type(actual_types[c.casefold()][1])
    }
    return {"missing_columns": missing, "unexpected_columns": unexpected, "type_mismatches": mismatched}


PARTITION_END_VARIABLE = "PARTITION_END"


def partition_end(tags: Mapping[str, str]) -> str | None:
    """End of the partition (range) a run processes, as an ISO UTC timestamp.

    Contracts that declare the Soda variable PARTITION_END measure business-time freshness against
    it, so checking (or backfilling) an old day does not warn that the day is old. None when the run
    is not time-partitioned: Soda then uses its default, now.
    """
    window = partition_window(tags)
    return window[1].isoformat() if window else None


def window_literal(at: dt.datetime) -> str:
    """A window bound as the contract filter compares it: 'YYYY-MM-DD' at midnight, else with the time.

    A plain date literal lets DuckDB compare a DATE column without a cast, so it can skip row groups.
    """
    at = at.astimezone(dt.UTC)
    return at.date().isoformat() if at.time() == dt.time(0) else at.strftime("%Y-%m-%d %H:%M:%S")


def window_variables(window: tuple[dt.datetime, dt.datetime]) -> dict[str, str]:
    """The Soda variables that bind a contract's dataset filter to `window`."""
    return {WINDOW_START_VARIABLE: window_literal(window[0]), WINDOW_END_VARIABLE: window_literal(window[1])}


PARTITIONS_FIRST_DAY_VARIABLE = "PARTITIONS_FIRST_DAY"
PARTITIONS_END_VARIABLE = "PARTITIONS_END"


def partition_bounds_variables(first_day: dt.date, today: dt.date) -> dict[str, str]:
    """Soda variables bounding every daily partition there is: [first day, tomorrow). Contracts that
    declare them can flag rows dated outside every partition (rows no daily run would ever check)."""
    return {
        PARTITIONS_FIRST_DAY_VARIABLE: first_day.isoformat(),
        PARTITIONS_END_VARIABLE: (today + dt.timedelta(days=1)).isoformat(),
    }


def run_variables(tags: Mapping[str, str]) -> dict[str, str]:
    """Soda variables from a run's partition: the window the contract filter binds to and its end
    (business-time freshness). Empty outside time-partitioned runs: the contract defaults apply."""
    window = partition_window(tags)
    if window is None:
        return {}
    return {**window_variables(window), PARTITION_END_VARIABLE: window[1].isoformat()}
