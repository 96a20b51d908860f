"""`reliability anomaly ...`: try the anomaly monitors on any series."""

from __future__ import annotations

import argparse

from reliability.anomaly import DIRECTIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    anomaly = subparsers.add_parser("anomaly", help="anomaly monitors: score your own series with them")
    sub = anomaly.add_subparsers(dest="anomaly_command", metavar="COMMAND", required=True)
    score = sub.add_parser("score", help="score a timestamp,value CSV: prints timestamp,value,score,is_anomaly")
    score.add_argument("file", metavar="FILE.csv", help="CSV with the header timestamp,value (any frequency)")
    score.add_argument("--sensitivity", type=float, default=None, help="band half-width in robust sd (default 4.5)")
    score.add_argument("--direction", choices=DIRECTIONS, default="both", help="flag drops, spikes or both")
    score.add_argument("--min-history", type=int, default=None, help="points needed before a verdict (default 14)")
    score.set_defaults(handler=_score)


def _score(args: argparse.Namespace) -> int:
    import csv
    import sys
    from pathlib import Path

    from reliability.anomaly.detector import MonitorSettings
    from reliability.anomaly.series import BadSeries, parse_series, score_series, verdict_rows

    path = Path(args.file)
    try:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadSeries(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
        except OSError as exc:
            raise BadSeries(f"{path}: cannot read the file: {exc.strerror or type(exc).__name__}") from None
        overrides = {"direction": args.direction}
        if args.sensitivity is not None:
            overrides["sensitivity"] = args.sensitivity
        if args.min_history is not None:
            overrides["min_history"] = args.min_history
        try:
            settings = MonitorSettings(**overrides)
        except ValueError as exc:
            raise BadSeries(f"options: {exc}") from None
        observations = parse_series(text, str(path))
    except BadSeries as exc:
        from reliability.terminal import printable

        print(f"error: {printable(exc)}", file=sys.stderr)
        return 2
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerows(verdict_rows(observations, score_series(observations, settings)))
    return 0
