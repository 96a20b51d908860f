"""Start-up cost: loading the code location, and `reliability --help` (heavy imports must be lazy).

Baselines: `python -c "import dagster"` for the load (the floor any Dagster code location pays) and a
bare `python -c pass` for the CLI.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RELIABILITY = Path(sys.executable).with_name("reliability")


def _wall(cmd: list[str], repeats: int, env: dict[str, str] | None = None) -> float:
    """Median wall time of a fresh process running `cmd`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool) -> list[dict]:
    repeats = 3 if quick else 7
    # warm the dbt manifest once so the measurement is the steady-state load, not the first parse
    subprocess.run([sys.executable, "-c", "import reliability.definitions"], cwd=REPO, check=True)
    load = _wall([sys.executable, "-c", "import reliability.definitions"], repeats)
    dagster_floor = _wall([sys.executable, "-c", "import dagster"], repeats)
    help_time = _wall([str(RELIABILITY), "--help"], repeats)
    python_floor = _wall([sys.executable, "-c", "pass"], repeats)
    with tempfile.TemporaryDirectory() as tmp:  # an empty store: created (and migrated) once, then listed
        env = {**os.environ, "RELIABILITY_INCIDENT_STORE_URL": f"sqlite:///{tmp}/incidents.db"}
        subprocess.run([str(RELIABILITY), "incidents", "list", "--json"], cwd=REPO, env=env, check=True,
                       capture_output=True)  # fmt: skip
        list_time = _wall([str(RELIABILITY), "incidents", "list", "--json"], repeats, env)
        list_floor = _wall([sys.executable, "-c", "import sqlalchemy"], repeats, env)
    return [
        {"name": "startup.definitions_load", "ours_s": round(load, 3), "baseline_s": round(dagster_floor, 3),
         "ratio": round(load / dagster_floor, 2), "target": "ours_s <= 5", "met": load <= 5,
         "baseline": "python -c 'import dagster'"},
        {"name": "startup.cli_help", "ours_s": round(help_time, 3), "baseline_s": round(python_floor, 3),
         "ratio": round(help_time / python_floor, 2), "target": "ours_s <= 0.5", "met": help_time <= 0.5,
         "baseline": "python -c pass"},
        {"name": "startup.incidents_list_empty_store", "ours_s": round(list_time, 3),
         "baseline_s": round(list_floor, 3), "ratio": round(list_time / list_floor, 2),
         "target": "ours_s <= 0.5", "met": list_time <= 0.5,
         "baseline": "python -c 'import sqlalchemy' (the store's driver layer alone)"},
    ]
