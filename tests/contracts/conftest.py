"""Fixtures for the Soda contract tests: the repo's contracts and a fresh clean warehouse."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from reliability.settings import REPO_ROOT
from tests.contracts.warehouse import build_clean_warehouse

CONTRACTS_DIR = REPO_ROOT / "soda" / "contracts"
OTHER_CONTRACTS_DIR = REPO_ROOT / "tests" / "fixtures" / "other_project" / "contracts"
TABLES = ("raw_orders", "raw_customers", "raw_payments", "stg_orders", "stg_customers", "stg_payments")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return build_clean_warehouse(tmp_path / "warehouse.duckdb")


@pytest.fixture
def run_checks() -> Callable[..., dict[tuple[str, str], object]]:
    """Execute contract checks through Dagster on a real ephemeral instance; results by (asset, check)."""
    import dagster as dg

    def run(definitions: dg.Definitions, assets: tuple[str, ...] | None = TABLES) -> dict[tuple[str, str], object]:
        checks = list(definitions.asset_checks)
        if assets is None:  # every asset the checks target
            assets = tuple(sorted({k.asset_key.path[-1] for c in checks for k in c.check_keys}))
        with dg.DagsterInstance.ephemeral() as instance:
            result = dg.materialize(
                [*(dg.AssetSpec(a) for a in assets), *checks],
                selection=dg.AssetSelection.all_asset_checks(),
                instance=instance,
                raise_on_error=False,
            )
        return {(e.asset_key.path[-1], e.check_name): e for e in result.get_asset_check_evaluations()}

    return run
