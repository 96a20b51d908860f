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


def _once(cmd: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def _alternated(ours: list[str], floor: list[str], repeats: int, env: dict[str, str] | None = None):
    """Median wall times of fresh processes running `ours` and `floor`, alternated (so load drifts hit
    both alike), and the median of the per-round ratios."""
    pairs = [(_once(ours, env), _once(floor, env)) for _ in range(repeats)]
    ratio = statistics.median(a / b for a, b in pairs)
    return statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs), ratio


def run(quick: bool) -> list[dict]:
    repeats = 3 if quick else 7
    # warm the dbt manifest once so the measurement is the steady-state load, not the first parse
    subprocess.run([sys.executable, "-c", "import reliability.definitions"], cwd=REPO, check=True)
    load, dagster_floor, load_ratio = _alternated(
        [sys.executable, "-c", "import reliability.definitions"], [sys.executable, "-c", "import dagster"], repeats
    )
    help_time, python_floor, help_ratio = _alternated([str(RELIABILITY), "--help"], [sys.executable, "-c", "pass"],
                                                      repeats)  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:  # an empty store: created (and migrated) once, then listed
        env = {**os.environ, "RELIABILITY_INCIDENT_STORE_URL": f"sqlite:///{tmp}/incidents.db"}
        listing = [str(RELIABILITY), "incidents", "list", "--json"]
        subprocess.run(listing, cwd=REPO, env=env, check=True, capture_output=True)
        list_time, list_floor, list_ratio = _alternated(listing, [sys.executable, "-c", "import sqlalchemy"],
                                                        repeats * 2, env)  # fmt: skip
    return [
        {
            "name": "startup.definitions_load",
            "ours_s": round(load, 3),
            "baseline_s": round(dagster_floor, 3),
            "ratio": round(load_ratio, 2),
            "target": "ours_s <= 5",
            "met": load <= 5,
            "baseline": "python -c 'import dagster'",
        },
        {
            "name": "startup.cli_help",
            "ours_s": round(help_time, 3),
            "baseline_s": round(python_floor, 3),
            "ratio": round(help_ratio, 2),
            "target": "ours_s <= 0.5",
            "met": help_time <= 0.5,
            "baseline": "python -c pass",
        },
        {
            "name": "startup.incidents_list_empty_store",
            "ours_s": round(list_time, 3),
            "baseline_s": round(list_floor, 3),
            "ratio": round(list_ratio, 2),
            "target": "ours_s <= 0.5",
            "met": list_time <= 0.5,
            "baseline": "python -c 'import sqlalchemy' (the store's driver layer alone)",
        },
    ]
