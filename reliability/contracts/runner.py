"""Verify one contract with Soda against the DuckDB warehouse and turn its results into outcomes.

One verification = one metadata query (which columns exist), one Soda run (Soda computes all
aggregate metrics of a contract in a single scan) and, only for checks that failed, one bounded
sample query each. The warehouse is opened read-only; callers serialise DuckDB access through the
`duckdb` pool.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reliability.contracts import sql
from reliability.contracts.evaluate import (
    FAILED,
    PASSED,
    WARN,
    Outcome,
    SodaRecord,
    all_failed,
    column_gone_outcome,
    not_evaluated_outcome,
    outcome_from_soda,
    plain,
    schema_changes,
    schema_diff,
)
from reliability.contracts.spec import (
    WINDOW_VARIABLES,
    BrokenContract,
    CheckSpec,
    ContractSpec,
    load_contract,
)


def _quiet_soda() -> None:
    """Soda Core sends telemetry unless told not to; the platform never does."""
    os.environ.setdefault("SODA_CORE_TELEMETRY_ENABLED", "false")


def partition_scope(variables: Mapping[str, str]) -> str:
    """'partition window [start, end)': which rows a partition's check result is about."""
    start, end = (variables[k] for k in WINDOW_VARIABLES)
    return f"partition window [{start}, {end})"


def run_soda(
    con: Any,
    contract: ContractSpec,
    check_paths: list[str] | None,
    variables: Mapping[str, str] | None = None,
) -> tuple[dict[str, SodaRecord], str]:
    """Run Soda on `con` for the given check paths (None = all); return records by path and errors."""
    _quiet_soda()
    # heavy imports, and soda_core's api must come before soda_duckdb (import cycle)
    from soda_core.contracts.api import verify_contract_locally
    from soda_duckdb import DuckDBDataSource

    data_source = DuckDBDataSource.from_existing_cursor(con, contract.datasource)
    result = verify_contract_locally(
        data_sources=[data_source],
        contract_file_path=str(contract.path),
        check_paths=check_paths,
        # only the variables the contract declares (e.g. PARTITION_END for business-time freshness)
        variables={k: v for k, v in (variables or {}).items() if k in contract.variables} or None,
    )
    records: dict[str, SodaRecord] = {}
    for verification in result.contract_verification_results:
        for check_result in verification.check_results:
            check = check_result.check
            records[check.relative_path] = SodaRecord(
                path=check.relative_path,
                outcome=check_result.outcome.name,
                value=check_result.threshold_value,
                threshold=_threshold_text(check),
                diagnostics=dict(check_result.diagnostic_metric_values or {}),
            )
    return records, result.get_errors_str()


def _threshold_text(check: Any) -> str:
    """Soda's fail threshold and, when the contract sets one, its additional warn threshold."""
    parts = [t for t in (check.threshold, getattr(check, "warn_threshold", None)) if t]
    return "; ".join(str(t).replace("\n", ", ") for t in parts)


def _fetch_dicts(con: Any, query: sql.Query) -> list[dict[str, Any]]:
    cursor = con.execute(query.sql, list(query.params))
    names = [d[0] for d in cursor.description]
    return [{n: plain(v) for n, v in zip(names, row, strict=True)} for row in cursor.fetchall()]


def check_variables(contract: ContractSpec, check: CheckSpec, variables: Mapping[str, str] | None) -> dict[str, str]:
    """The variables one check runs with: a whole-table check drops the partition window (defaults apply)."""
    given = dict(variables or {})
    if check.whole_table:
        for name in WINDOW_VARIABLES:
            given.pop(name, None)
    return {k: v for k, v in given.items() if k in contract.variables}


def _sample_query(
    contract: ContractSpec, check: CheckSpec, limit: int, variables: Mapping[str, str]
) -> sql.Query | None:
    filters = [contract.resolved(contract.dataset_filter, variables), contract.resolved(check.check_filter, variables)]
    args = (contract.prefixes, contract.table)
    if check.kind == "missing":
        return sql.missing_sample(*args, check.column, check.rules, filters, limit)
    if check.kind == "invalid":
        return sql.invalid_sample(*args, check.column, check.rules, filters, limit)
    if check.kind == "duplicate":
        rules = check.rules if check.column is not None else None
        return sql.duplicate_sample(*args, check.columns, rules, filters, limit)
    return None


def _add_evidence(
    con: Any,
    contract: ContractSpec,
    outcome: Outcome,
    actual: list[tuple[str, str]],
    limit: int,
    variables: Mapping[str, str],
) -> None:
    """Attach what a human needs to see next to a failed check: rows, columns or the latest value."""
    check = outcome.check
    try:
        if outcome.wants_sample:
            query = _sample_query(contract, check, limit, variables)
            if query is not None:
                outcome.sample = _fetch_dicts(con, query)
        elif check.kind == "schema":
            outcome.metadata.update(schema_diff(contract.data_types, actual))
            outcome.metadata["schema_changes"] = schema_changes(contract.data_types, actual)
        elif check.kind == "freshness" and outcome.metadata.get("soda_outcome") in (FAILED, WARN):
            filters = [contract.resolved(contract.dataset_filter, variables)]
            query = sql.max_value(contract.prefixes, contract.table, check.columns[0], filters)
            outcome.metadata["latest_value"] = plain(con.execute(query.sql, list(query.params)).fetchone()[0])
    except Exception as exc:  # evidence is best effort; the verdict stands without it
        outcome.metadata["evidence_error"] = f"{type(exc).__name__}: {exc}"[:500]


def _soda_records(
    con: Any, contract: ContractSpec, specs: list[CheckSpec], variables: Mapping[str, str] | None
) -> tuple[dict[str, SodaRecord], str]:
    """One Soda scan of `specs` (all of the contract's checks in one go when that is all of them)."""
    if not specs:
        return {}, ""
    try:
        paths = None if len(specs) == len(contract.checks) else [c.soda_path for c in specs]
        return run_soda(con, contract, paths, variables)
    except Exception as exc:  # Soda rejected the contract or the query failed
        return {}, f"Soda could not verify the contract: {type(exc).__name__}: {exc}"


def verify_on_connection(
    con: Any,
    loaded: ContractSpec,
    selected: Iterable[str] | None = None,
    sample_limit: int = sql.SAMPLE_LIMIT,
    variables: Mapping[str, str] | None = None,
) -> list[Outcome]:
    """Outcomes for the selected checks of `loaded` (all when None), one per check, in spec order."""
    wanted = [c for c in loaded.checks if selected is None or c.name in set(selected)]
    current = load_contract(loaded.path)  # the file may have changed since definitions loaded
    if isinstance(current, BrokenContract):
        return all_failed(wanted, loaded.path, f"contract is broken: {current.problem}")
    by_name = {c.name: c for c in current.checks}

    query = sql.columns_query(current.prefixes, current.table)
    actual: list[tuple[str, str]] = [tuple(r) for r in con.execute(query.sql, list(query.params)).fetchall()]
    if not actual:
        where = ".".join([*current.prefixes, current.table])
        return all_failed(wanted, loaded.path, f"table '{where}' does not exist in the warehouse")
    present = {name.casefold() for name, _ in actual}
    # A column that disappeared or changed type is one fault, reported by the schema check: the checks
    # reading it are attached to that check (not_evaluated_due_to) instead of failing with misleading
    # titles of their own, and stay out of the Soda scan (a retyped column can break the whole query).
    # Whether a type changed is Soda's call: with a suspect type, its schema check runs first, alone.
    schema_check = next((c for c in current.checks if c.kind == "schema"), None)
    changed = {c["column"].casefold(): c for c in schema_changes(current.data_types, actual)} if schema_check else {}
    if schema_check is not None and any(c["new_type"] is not None for c in changed.values()):
        scope = check_variables(current, schema_check, variables)
        verdict = _soda_records(con, current, [schema_check], scope)[0].get(schema_check.soda_path)
        if verdict is not None and verdict.outcome == PASSED:  # Soda still accepts the types
            changed = {k: c for k, c in changed.items() if c["new_type"] is None}

    outcomes: dict[str, Outcome] = {}
    to_run: list[CheckSpec] = []
    for check in wanted:
        spec = by_name.get(check.name)
        if spec is None:
            continue  # reported below as missing from Soda's answer
        hit = [changed[c.casefold()] for c in spec.columns if c.casefold() in changed]
        gone = [c for c in spec.columns if c.casefold() not in present]
        if hit and schema_check is not None and spec is not schema_check:
            outcomes[check.name] = not_evaluated_outcome(spec, loaded.path, schema_check.name, hit)
        elif gone:
            outcomes[check.name] = column_gone_outcome(spec, loaded.path, current.table, gone)
        else:
            to_run.append(spec)

    records: dict[str, SodaRecord] = {}
    errors: dict[str, str] = {}
    # one Soda run per set of variables: the partition's checks, then the whole-table ones (if any)
    groups: dict[tuple[tuple[str, str], ...], list[CheckSpec]] = {}
    for spec in to_run:
        groups.setdefault(tuple(sorted(check_variables(current, spec, variables).items())), []).append(spec)
    for key, specs in groups.items():
        everything = len(specs) == len(current.checks)
        try:
            paths = None if everything else [c.soda_path for c in specs]
            got, error = run_soda(con, current, paths, dict(key))
            # Soda reports the checks it was not asked for as excluded: keep this group's results only
            records.update({c.soda_path: got[c.soda_path] for c in specs if c.soda_path in got})
        except Exception as exc:  # Soda rejected the contract or the query failed
            error = f"Soda could not verify the contract: {type(exc).__name__}: {exc}"
        errors.update(dict.fromkeys((c.name for c in specs), error))
    windowed = current.partition_windowed and all(variables and k in variables for k in WINDOW_VARIABLES)
    for check in wanted:
        if check.name in outcomes:
            continue
        spec = by_name.get(check.name, check)
        outcome = outcome_from_soda(spec, records.get(spec.soda_path), loaded.path, errors.get(spec.name, ""))
        if spec is check and check.name not in by_name:
            outcome.metadata["error"] = f"{loaded.path}: check {check.soda_path} is no longer in the contract"
            outcome.description = outcome.metadata["error"] + "; reload the code location"
        else:
            used = check_variables(current, spec, variables)
            if windowed:
                outcome.metadata["checked_rows"] = "whole table" if spec.whole_table else partition_scope(used)
            _add_evidence(con, current, outcome, actual, sample_limit, used)
        outcomes[check.name] = outcome
    return [outcomes[c.name] for c in wanted]


def verify_contract(
    contract: ContractSpec,
    warehouse_path: Path,
    selected: Iterable[str] | None = None,
    sample_limit: int = sql.SAMPLE_LIMIT,
    variables: Mapping[str, str] | None = None,
    lock_wait_s: float = 30.0,
) -> list[Outcome]:
    """Open the warehouse read-only and verify `contract`; never raises for data or contract problems.

    `variables` are Soda contract variables; the Dagster check passes PARTITION_END (see `defs`).
    """
    wanted = [c for c in contract.checks if selected is None or c.name in set(selected)]
    if not Path(warehouse_path).exists():
        return all_failed(wanted, contract.path, f"warehouse file {warehouse_path} does not exist")
    import duckdb

    deadline = time.monotonic() + lock_wait_s
    while True:
        try:
            con = duckdb.connect(str(warehouse_path), read_only=True)
            break
        except duckdb.Error as exc:
            # another process holds the write lock (a load outside Dagster's pool): wait a little
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                return all_failed(wanted, contract.path, f"cannot open warehouse {warehouse_path}: {exc}")
            time.sleep(0.5)
    try:
        return verify_on_connection(con, contract, [c.name for c in wanted], sample_limit, variables)
    finally:
        con.close()
