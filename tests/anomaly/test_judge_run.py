"""What a check run judges when its run has no partition (real DuckDB): nothing complete yet is said as
such, not passed as healthy; a table without a day column is judged as one whole-table snapshot a day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb

from reliability.anomaly.config import parse_anomaly_config
from reliability.anomaly.defs import check_result, judge_run
from reliability.anomaly.discovery import TableAsset, monitored_assets
from reliability.incidents.model import FaultClass
from reliability.partitions import PARTITION_KEYS_METADATA
from reliability.shop.generator import write_partition
from tests.anomaly.shop_history import FIRST_DAY, SCALE

CONFIG = monitored_assets(
    parse_anomaly_config({"defaults": {"min_history": 3, "window": 7}}, "assets.yaml"),
    [TableAsset("raw_orders", "raw_orders", day_column="order_date"), TableAsset("clv", "clv")],
)


def _noon(day) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def test_only_the_day_in_progress_has_rows_so_nothing_is_judged_and_the_check_says_so(tmp_path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        write_partition(con, "raw_orders", FIRST_DAY, SCALE, loaded_at=_noon(FIRST_DAY))
        judged = judge_run(con, CONFIG, "raw_orders", [], _noon(FIRST_DAY), set())
        assert judged.verdicts == {} and judged.judged == []
        result = check_result("raw_orders", judged.verdicts, FaultClass.VOLUME, False, None, judged.empty)
        assert result.passed and result.metadata["status"].value == "nothing_to_judge"
        assert result.description.startswith("nothing to judge yet: no complete day with rows in order_date")
        assert result.metadata[PARTITION_KEYS_METADATA].value == []
        # the next day the first day is complete: judged (learning: no history yet)
        tomorrow = judge_run(con, CONFIG, "raw_orders", [], _noon(FIRST_DAY + timedelta(days=1)), set())
        assert tomorrow.judged == [FIRST_DAY]
        learning = check_result("raw_orders", tomorrow.verdicts, FaultClass.VOLUME, False, None, tomorrow.empty)
        assert learning.passed and learning.metadata["status"].value == "learning"


def test_a_table_without_day_column_is_one_snapshot_per_check_day_and_a_halved_table_fails(tmp_path) -> None:
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create table clv as select range as customer_id, range % 7 as orders from range(1000)")
        for n in range(4):  # one snapshot a day, re-run the same day replaces it
            for hour in (6, 18):
                at = _noon(FIRST_DAY + timedelta(days=n)).replace(hour=hour)
                judged = judge_run(con, CONFIG, "clv", [], at, set())
                assert judged.mode == "snapshot" and judged.judged == [at.date()]
        assert con.execute("select count(distinct partition_date) from reliability.metric_history").fetchone() == (4,)
        con.execute("delete from clv where customer_id % 2 = 0")
        day = FIRST_DAY + timedelta(days=4)
        judged = judge_run(con, CONFIG, "clv", [], _noon(day), set())
        result = check_result("clv", judged.verdicts, FaultClass.VOLUME, False, None, judged.empty, judged.lead)
        assert not result.passed and result.metadata[PARTITION_KEYS_METADATA].value == [day.isoformat()]
        assert result.description.startswith("whole-table snapshot (no day column): anomaly on 1 day(s)")
        assert FaultClass.FRESHNESS not in judged.verdicts[day]  # no day end to measure freshness against


def test_a_partitioned_run_of_the_day_in_progress_judges_yesterday_not_today(tmp_path) -> None:
    """Today's partition (end_offset=1) is rebuilt all day: judging it would flag a volume drop every
    morning. Its run judges the complete days new or changed since instead."""
    days = [FIRST_DAY + timedelta(days=n) for n in range(6)]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        for day in days[:5]:
            write_partition(con, "raw_orders", day, SCALE, loaded_at=_noon(day))
            assert judge_run(con, CONFIG, "raw_orders", [day], _noon(day) + timedelta(days=1), set()).judged == [day]
        today = days[5]  # a tenth of the day so far: a drop if it were judged as a whole day
        write_partition(con, "raw_orders", today, SCALE, loaded_at=_noon(today))
        con.execute("delete from raw_orders where order_date = ? and order_id % 10 <> 0", [today])
        morning = judge_run(con, CONFIG, "raw_orders", [today], _noon(today).replace(hour=2), set())
        assert morning.judged == [] and today not in morning.verdicts
        result = check_result("raw_orders", morning.verdicts, FaultClass.VOLUME, False, None, morning.empty,
                              morning.lead)  # fmt: skip
        assert result.passed and result.description.startswith(f"{today} in progress (judged once complete); ")
        # yesterday's late rows arrive with today's run: yesterday is judged again, on its final rows
        con.execute("insert into raw_orders select * from raw_orders where order_date = ? limit 3", [days[4]])
        later = judge_run(con, CONFIG, "raw_orders", [days[4], today], _noon(today), set())
        assert later.mode == "partitions" and later.judged == [days[4]] and today not in later.verdicts
        # the next day, today's partition is complete and a run of it is judged like any other
        next_day = judge_run(con, CONFIG, "raw_orders", [today], _noon(today) + timedelta(days=1), set())
        assert next_day.judged == [today]
        failed = check_result("raw_orders", next_day.verdicts, FaultClass.VOLUME, False, None, next_day.empty)
        assert not failed.passed and failed.metadata[PARTITION_KEYS_METADATA].value == [today.isoformat()]
