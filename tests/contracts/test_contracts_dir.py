"""A contracts folder that does not exist or holds no contract fails loading with its path (issue 9):
otherwise every Soda check silently disappears from the code location."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from reliability.contracts.defs import defs
from reliability.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_a_missing_contracts_folder_fails_loading_with_its_path(tmp_path):
    missing = tmp_path / "soda" / "contract"
    with pytest.raises(ConfigError) as error:
        defs(contracts_dir=missing, warehouse_path=tmp_path / "w.duckdb")
    assert str(missing) in str(error.value) and "does not exist" in str(error.value)
    assert "RELIABILITY_CONTRACTS_DIR" in str(error.value)


def test_a_contracts_folder_without_contracts_fails_loading_with_its_path(tmp_path):
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "README.md").write_text("contracts go here\n")
    with pytest.raises(ConfigError) as error:
        defs(contracts_dir=folder, warehouse_path=tmp_path / "w.duckdb")
    assert str(folder) in str(error.value) and "holds no contract" in str(error.value)


def test_dagster_definitions_validate_names_the_missing_folder(tmp_path):
    missing = tmp_path / "typo_contracts"
    env = {**os.environ, "RELIABILITY_CONTRACTS_DIR": str(missing), "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", "-m", "reliability.definitions"],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode != 0
    assert f"{missing}: the Soda contracts folder does not exist" in proc.stdout + proc.stderr
