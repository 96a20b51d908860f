"""`reliability contracts ...`: list the Soda contracts' checks, verify them against the warehouse.

The same code the Dagster checks run, without Dagster: handy while writing a contract.
"""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    contracts = subparsers.add_parser("contracts", help="Soda data contracts: list their checks, verify them")
    sub = contracts.add_subparsers(dest="contracts_command", metavar="CONTRACTS_COMMAND", required=True)
    listing = sub.add_parser("list", help="every contract, its asset and its checks (exit 1 if one is broken)")
    listing.add_argument("--dir", default=None, help="contracts folder (default: from settings)")
    listing.set_defaults(handler=_list)
    verify = sub.add_parser("verify", help="run contracts against the DuckDB warehouse (exit 1 on a failure)")
    verify.add_argument("tables", nargs="*", help="only the contracts of these tables (default: all)")
    verify.add_argument("--dir", default=None, help="contracts folder (default: from settings)")
    verify.add_argument("--warehouse", default=None, help="DuckDB file (default: from settings)")
    verify.add_argument("--json", action="store_true", help="one JSON object per check")
    verify.add_argument(
        "--partition", metavar="DAY", help="check only this daily partition, as a daily run does (e.g. 2026-11-20)"
    )
    verify.set_defaults(handler=_verify)


def _folder(args: argparse.Namespace):
    from pathlib import Path

    from reliability.errors import UserFacingError
    from reliability.settings import get_settings

    folder = Path(args.dir) if args.dir else get_settings().contracts_dir
    if not folder.is_dir():
        raise UserFacingError(f"contracts folder {folder} does not exist")
    return folder


def _list(args: argparse.Namespace) -> int:
    from reliability.contracts.spec import BrokenContract, discover_contracts

    broken = 0
    for contract in discover_contracts(_folder(args)):
        if isinstance(contract, BrokenContract):
            broken += 1
            print(f"{contract.path}: BROKEN -> {contract.asset_name}.{contract.check_name}: {contract.problem}")
            continue
        print(f"{contract.path} -> asset {contract.asset_name}")
        for check in contract.checks:
            policy = f"{check.severity}{', blocking' if check.blocking else ''}"
            print(f"  {check.name:<32} {check.soda_path:<40} {policy}")
    return 1 if broken else 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from reliability.clock import utcnow
    from reliability.contracts.evaluate import partition_bounds_variables, run_variables
    from reliability.contracts.runner import verify_contract
    from reliability.contracts.spec import BrokenContract, discover_contracts
    from reliability.errors import UserFacingError
    from reliability.settings import get_settings

    settings = get_settings()
    warehouse = Path(args.warehouse) if args.warehouse else settings.warehouse_path
    variables = partition_bounds_variables(settings.partitions_start_date, utcnow().date())
    if args.partition is not None:
        window = run_variables({"dagster/partition": args.partition})
        if not window:
            raise UserFacingError(f"--partition must be a day like 2026-11-20 (or an hour like 2026-11-20-13:00), "
                                  f"got {args.partition!r}")  # fmt: skip
        variables.update(window)
    contracts = discover_contracts(_folder(args))
    if args.tables:
        contracts = [c for c in contracts if c.asset_name in set(args.tables)]
        if not contracts:
            raise UserFacingError(f"no contract for table(s) {args.tables}")
    worst = 0
    for contract in contracts:
        if isinstance(contract, BrokenContract):
            print(f"{contract.asset_name}.{contract.check_name}: FAILED {contract.message}")
            worst = 1
            continue
        for outcome in verify_contract(contract, warehouse, variables=variables):
            if not outcome.passed and outcome.severity == "error":
                worst = 1
            if args.json:
                row = {
                    "asset": contract.asset_name,
                    "check": outcome.check.name,
                    "passed": outcome.passed,
                    "severity": outcome.severity,
                    "description": outcome.description,
                    "metadata": outcome.metadata,
                    "failing_rows_sample": outcome.sample,
                }
                print(json.dumps(row, default=str))
            else:
                verdict = "passed" if outcome.passed else ("WARN" if outcome.severity == "warn" else "FAILED")
                print(f"{contract.asset_name}.{outcome.check.name}: {verdict} {outcome.description}")
    return worst
