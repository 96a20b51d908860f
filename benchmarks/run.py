"""Run one benchmark: `python benchmarks/run.py NAME [--quick]`.

Each benchmark is a module `benchmarks/NAME.py` with `run(quick: bool) -> list[dict]`; every dict has at
least `name`, `ours_s`, `baseline_s`, `ratio`, `target` and is printed as one JSON line.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

REQUIRED_KEYS = ("name", "ours_s", "baseline_s", "ratio", "target")


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    available = sorted(p.stem for p in here.glob("*.py") if p.stem != "run" and not p.stem.startswith("_"))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("name", choices=available)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a fast look")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(here.parent))
    sys.path.insert(0, str(here))
    module = importlib.import_module(args.name)
    for row in module.run(quick=args.quick):
        missing = [k for k in REQUIRED_KEYS if k not in row]
        if missing:
            raise SystemExit(f"benchmark {args.name} row lacks {missing}: {row}")
        print(json.dumps(row, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
