"""`reliability anomaly score` on CSV files, and the `anomaly:` section of the assets file."""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path

import pytest

from reliability.anomaly.config import parse_anomaly_config
from reliability.cli import main
from reliability.errors import ConfigError


def _write_daily(path: Path, values: list[float]) -> Path:
    start = date(2026, 1, 5)
    rows = [f"{start + timedelta(days=i)},{v}" for i, v in enumerate(values)]
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_score_prints_one_row_per_point_and_flags_the_drop(tmp_path, capsys) -> None:
    weekly = [100, 102, 98, 101, 99, 130, 128]
    values = [weekly[i % 7] * (1 + 0.01 * math.sin(i)) for i in range(42)]
    values[38] *= 0.5
    assert main(["anomaly", "score", str(_write_daily(tmp_path / "s.csv", values))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "timestamp,value,score,is_anomaly" and len(lines) == 43
    assert lines[1].endswith(",,learning")
    flagged = [line.split(",")[0] for line in lines[1:] if line.endswith(",true")]
    assert flagged == [str(date(2026, 1, 5) + timedelta(days=38))]  # weekends are seasonal, not anomalies


def test_hourly_series_take_the_hour_as_season(tmp_path, capsys) -> None:
    rows = [f"2026-01-01T{h % 24:02d}:00:00+00:00" for h in range(24)]  # one day: too short to judge
    (tmp_path / "h.csv").write_text("timestamp,value\n" + "\n".join(f"{t},{i}" for i, t in enumerate(rows)))
    assert main(["anomaly", "score", str(tmp_path / "h.csv"), "--min-history", "30"]) == 0
    assert all(line.endswith("learning") for line in capsys.readouterr().out.splitlines()[1:])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("time,value\n2026-01-01,1\n", "s.csv:1: expected the header 'timestamp,value'"),
        ("timestamp,value\n2026-01-01,1\n2026-01-02,abc\n", "s.csv:3: value 'abc' is not a finite number"),
        ("timestamp,value\n2026-01-01,1\nyesterday,2\n", "s.csv:3: timestamp 'yesterday' is not an ISO 8601"),
        ("timestamp,value\n2026-01-02,1\n2026-01-01,2\n", "s.csv:3: timestamp '2026-01-01' is not after"),
        ("timestamp,value\n2026-01-01,nan\n", "s.csv:2: value 'nan' is not a finite number"),
        ("timestamp,value\n2026-01-01,1,2\n", "s.csv:2: expected 2 columns"),
        ("timestamp,value\n", "s.csv: no data rows after the header"),
    ],
)
def test_bad_input_is_one_line_naming_file_line_and_value(tmp_path, capsys, text, message) -> None:
    path = tmp_path / "s.csv"
    path.write_text(text, encoding="utf-8")
    assert main(["anomaly", "score", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_file_and_bad_option_are_named(tmp_path, capsys) -> None:
    assert main(["anomaly", "score", str(tmp_path / "none.csv")]) == 2
    assert "none.csv: cannot read the file" in capsys.readouterr().err
    assert main(["anomaly", "score", str(_write_daily(tmp_path / "s.csv", [1, 2])), "--sensitivity", "-1"]) == 2
    assert "sensitivity must be a number > 0" in capsys.readouterr().err


def test_config_layers_from_general_to_specific() -> None:
    config = parse_anomaly_config(
        {
            "defaults": {"sensitivity": 5},
            "metrics": {"row_count": {"direction": "drop"}},
            "assets": {
                "orders": {
                    "partition_column": "day", "sensitivity": 3, "disabled_columns": ["email"],
                    "metrics": {"null_fraction:status": {"direction": "both"}},
                },
                "payments": {"partition_column": "day", "blocking": True},
            },
            "relations": [{"numerator": "payments", "denominator": "orders"}],
        },
        "assets.yaml",
    )  # fmt: skip
    assert config.settings_for("orders", "row_count").direction == "drop"
    assert config.settings_for("orders", "row_count").sensitivity == 3
    assert config.settings_for("payments", "row_count").sensitivity == 5
    assert config.settings_for("orders", "null_fraction:amount").direction == "spike"  # the kind's default
    assert config.settings_for("orders", "null_fraction:status").direction == "both"
    assert config.settings_for("orders", "null_fraction:email") is None
    assert config.settings_for("orders", "share:email=x") is None
    assert config.assets["payments"].blocking and [r.numerator for r in config.relations_of("payments")] == ["payments"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"assets": {"orders": {"partition_column": ""}}}, "anomaly.assets.orders.partition_column: expected the name"),
        ({"assets": {"orders": {"partition_column": "d", "sensitivty": 3}}}, "unknown field(s) ['sensitivty']"),
        ({"assets": {"orders": {"partition_column": "d", "direction": "down"}}}, "anomaly.assets.orders: direction"),
        ({"defaults": {"min_history": 1}}, "anomaly.defaults: min_history must be at least 3"),
        ({"assets": {"o": {"partition_column": "d", "blocking": "yes"}}}, "anomaly.assets.o.blocking: expected true"),
        (
            {"assets": {"a": {"enabled": False}}, "relations": [{"numerator": "a", "denominator": "b"}]},
            "relations.0.numerator: 'a' is switched off",
        ),
        ({"all_tables": "no"}, "anomaly.all_tables: expected true or false"),
        ({"monitors": {}}, "unknown field(s) ['monitors']"),
    ],
)
def test_config_errors_name_file_and_field(raw, message) -> None:
    with pytest.raises(ConfigError, match="assets.yaml: ") as err:
        parse_anomaly_config(raw, "assets.yaml")
    assert message in str(err.value)
