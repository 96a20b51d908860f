"""Dagster glue: every Soda contract becomes one `@multi_asset_check` with one check per Soda check.

Contracts are parsed at load time without Soda or DuckDB (see `spec`), so loading stays fast and a
broken contract becomes a failing `soda_contract_valid` check instead of a broken code location.
Checks read the DuckDB warehouse read-only but still join the `duckdb` pool: DuckDB refuses a reader
in another process while a writer holds the file.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import dagster as dg

from reliability.clock import utcnow
from reliability.contracts.evaluate import PARTITION_END_VARIABLE, Outcome, partition_bounds_variables, run_variables
from reliability.contracts.spec import (
    BrokenContract,
    ContractSpec,
    discover_contracts,
    safe_name_part,
)
from reliability.partitions import PARTITION_KEYS_METADATA, partition_keys
from reliability.settings import Settings, get_settings

DUCKDB_POOL = "duckdb"
log = logging.getLogger(__name__)


def _severity(outcome: Outcome) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.WARN if outcome.severity == "warn" else dg.AssetCheckSeverity.ERROR


def to_check_result(outcome: Outcome, asset_name: str) -> dg.AssetCheckResult:
    """One outcome as a Dagster result; the failing-row sample becomes a table in the UI."""
    metadata: dict[str, object] = dict(outcome.metadata)
    if outcome.sample is not None:
        metadata["failing_rows_sample_size"] = len(outcome.sample)
        columns = list(outcome.sample[0]) if outcome.sample else []
        metadata["failing_rows_sample"] = dg.MetadataValue.table(
            records=[dg.TableRecord({k: ("" if v is None else v) for k, v in row.items()}) for row in outcome.sample],
            schema=dg.TableSchema(columns=[dg.TableColumn(name=c, type="string") for c in columns]),
        )
    for key in ("type_mismatches",):
        if key in metadata:
            metadata[key] = dg.MetadataValue.json(metadata[key])
    return dg.AssetCheckResult(
        asset_key=dg.AssetKey([asset_name]),
        check_name=outcome.check.name,
        passed=outcome.passed,
        severity=_severity(outcome),
        description=outcome.description,
        metadata=metadata,
    )


def _op_name(path: Path, taken: set[str]) -> str:
    name = f"soda_contract_{safe_name_part(path.stem)}"
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def contract_check(
    contract: ContractSpec, warehouse_path: Path, op_name: str, partitions_start: date | None = None
) -> dg.AssetChecksDefinition:
    """The multi-asset check verifying one contract: Soda runs once, one result per selected spec.

    `partitions_start` (the first daily partition) binds PARTITIONS_FIRST_DAY / PARTITIONS_END, so a
    contract can flag rows dated outside every partition; "today" is read when the check runs."""
    asset = dg.AssetKey([contract.asset_name])
    specs = [
        dg.AssetCheckSpec(
            name=c.name,
            asset=asset,
            blocking=c.blocking,
            description=f"{c.title} ({contract.path.name}: {c.soda_path})",
            metadata={
                "contract": str(contract.path),
                "soda_check": c.soda_path,
                "check_type": c.kind,
                "threshold": c.threshold or "soda default",
                "severity_on_failure": c.severity,
            },
        )
        for c in contract.checks
    ]

    @dg.multi_asset_check(
        specs=specs,
        name=op_name,
        description=f"Soda contract {contract.path}",
        can_subset=True,
        compute_kind="soda",
        pool=DUCKDB_POOL,
    )
    def _verify(context):
        from reliability.contracts.runner import verify_contract

        selected = [k.name for k in context.selected_asset_check_keys if k.asset_key == asset]
        bounds = partition_bounds_variables(partitions_start, utcnow().date()) if partitions_start else {}
        variables = {**bounds, **run_variables(context.run.tags)}
        keys = partition_keys(context.run.tags)
        for outcome in verify_contract(contract, warehouse_path, selected, variables=variables or None):
            if PARTITION_END_VARIABLE in variables and PARTITION_END_VARIABLE in contract.variables:
                outcome.metadata["partition_end"] = variables[PARTITION_END_VARIABLE]
            if keys:
                outcome.metadata[PARTITION_KEYS_METADATA] = dg.MetadataValue.json(keys)
            yield to_check_result(outcome, contract.asset_name)

    return _verify


def broken_contract_check(contract: BrokenContract, op_name: str) -> dg.AssetChecksDefinition:
    """A contract that could not be parsed: one check that always fails and names file and problem."""
    spec = dg.AssetCheckSpec(
        name=contract.check_name,
        asset=dg.AssetKey([contract.asset_name]),
        blocking=False,
        description=f"Contract {contract.path.name} could not be loaded: {contract.problem}"[:1000],
        metadata={"contract": str(contract.path), "error": contract.problem[:1000]},
    )

    @dg.multi_asset_check(specs=[spec], name=op_name, description=f"Broken Soda contract {contract.path}")
    def _broken(context):
        yield dg.AssetCheckResult(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=f"{contract.message}. Fix the contract and reload the code location.",
            metadata={"contract": str(contract.path), "error": contract.problem[:2000]},
        )

    return _broken


def build_contract_checks(
    contracts_dir: Path, warehouse_path: Path, partitions_start: date | None = None
) -> list[dg.AssetChecksDefinition]:
    """One check definition per contract file; nothing here may break the code location."""
    taken: set[str] = set()
    checks: list[dg.AssetChecksDefinition] = []
    for contract in discover_contracts(contracts_dir):
        op_name = _op_name(contract.path, taken)
        if isinstance(contract, ContractSpec):
            try:
                checks.append(contract_check(contract, warehouse_path, op_name, partitions_start))
                continue
            except Exception as exc:  # a name Dagster refuses, for instance
                contract = BrokenContract(
                    contract.path, safe_name_part(contract.asset_name), f"Dagster refused the checks: {exc}"
                )
        log.warning("Soda contract %s is broken: %s", contract.path, contract.problem)
        try:
            checks.append(broken_contract_check(contract, op_name))
        except Exception:
            log.exception("Soda contract %s is broken and cannot even be shown as a check", contract.path)
    return checks


def defs(
    settings: Settings | None = None, *, contracts_dir: Path | None = None, warehouse_path: Path | None = None
) -> dg.Definitions:
    """Asset checks for every contract in the configured contracts folder (RELIABILITY_CONTRACTS_DIR)."""
    if settings is None and (contracts_dir is None or warehouse_path is None):
        settings = get_settings()
    if settings is not None:
        contracts_dir = contracts_dir or settings.contracts_dir
        warehouse_path = warehouse_path or settings.warehouse_path
    if not Path(contracts_dir).is_dir():
        log.warning("Soda contracts folder %s does not exist: no contract checks", contracts_dir)
    start = settings.partitions_start_date if settings is not None else None
    return dg.Definitions(asset_checks=build_contract_checks(Path(contracts_dir), Path(warehouse_path), start))
