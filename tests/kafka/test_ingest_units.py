"""Pure parts of ingestion, without a broker: error classification, backoff, retries, summaries, the
offsets-table migration (on a real DuckDB)."""

from __future__ import annotations

import duckdb
import pytest

from reliability.kafka.dead_letters import DeadLetterPublishError
from reliability.kafka.ingest import (
    Backoff,
    BrokerUnavailable,
    IngestStats,
    TopicMissing,
    is_transient,
    run_retrying,
    summary,
)
from reliability.kafka.warehouse import (
    OFFSETS_TABLE,
    UNKNOWN_GROUP,
    describe_duckdb_error,
    ensure_tables,
    migrate_offsets_table,
    stored_offsets,
)


@pytest.mark.parametrize(
    ("name", "retriable", "fatal", "expected"),
    [
        ("NOT_LEADER_FOR_PARTITION", False, False, True),
        ("_TRANSPORT", False, False, True),
        ("_ALL_BROKERS_DOWN", False, False, True),
        ("UNKNOWN_TOPIC_OR_PART", False, False, True),
        ("SOME_NEW_ERROR", True, False, True),  # librdkafka says retriable: trust it
        ("TOPIC_AUTHORIZATION_FAILED", False, False, False),
        ("_TRANSPORT", True, True, False),  # fatal is never retried
    ],
)
def test_which_kafka_errors_are_retried(name, retriable, fatal, expected):
    assert is_transient(name, retriable, fatal) is expected


def test_backoff_doubles_up_to_its_maximum_and_resets():
    backoff = Backoff(initial=0.5, maximum=3.0)
    assert [backoff.delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.delay() == 0.5


class ScriptedIngestor:
    """Stands in for Ingestor.run(): raises or returns what the script says, in order."""

    def __init__(self, script: list) -> None:
        self.script = script
        self.runs = 0

    def run(self, **_kwargs) -> IngestStats:
        self.runs += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def test_transient_errors_are_retried_with_backoff_until_a_run_succeeds():
    done = IngestStats(rows=5, stop_reason="caught up")
    ingestor = ScriptedIngestor([BrokerUnavailable("down"), DeadLetterPublishError("dlq down"), done])
    slept: list[float] = []
    retried: list[str] = []
    stats = run_retrying(
        ingestor, retry_for_s=60, sleep=slept.append, on_retry=lambda exc, delay: retried.append(str(exc))
    )
    assert stats is done and ingestor.runs == 3
    assert slept == [0.5, 1.0] and retried == ["down", "dlq down"]


def test_a_one_shot_run_gives_up_once_transient_errors_last_too_long():
    ingestor = ScriptedIngestor([BrokerUnavailable("down")] * 3)
    with pytest.raises(BrokerUnavailable):
        run_retrying(ingestor, retry_for_s=0, sleep=lambda _s: None)
    assert ingestor.runs == 1


def test_a_missing_topic_is_an_error_for_one_run_and_waited_for_by_forever():
    with pytest.raises(TopicMissing):
        run_retrying(ScriptedIngestor([TopicMissing("no topic")]), retry_for_s=60, sleep=lambda _s: None)
    waiting = ScriptedIngestor([TopicMissing("no topic"), TopicMissing("no topic"), KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):  # how a forever run ends: stopped by its user
        run_retrying(waiting, forever=True, sleep=lambda _s: None)
    assert waiting.runs == 3


def test_other_errors_are_not_retried():
    ingestor = ScriptedIngestor([ValueError("bug"), IngestStats()])
    with pytest.raises(ValueError):
        run_retrying(ingestor, forever=True, sleep=lambda _s: None)
    assert ingestor.runs == 1


def test_summary_says_how_far_it_got_and_why_it_stopped():
    stats = IngestStats(messages=12, rows=10, rejected=2, batches=3, seconds=1.25, stop_reason="caught up")
    assert summary(stats, "t") == (
        "ingested 10 row(s), rejected 2 to t.dlq (12 message(s) in 3 batch(es), 1.2s); caught up"
    )
    stats.error = "Kafka unavailable"
    assert summary(stats, "t").endswith("; stopped on an error: Kafka unavailable")


def test_duckdb_errors_users_meet_read_as_one_line():
    lock = duckdb.IOException(
        'IO Error: Could not set lock on file "/w/wh.duckdb": Conflicting lock is held in /usr/bin/python3.11 '
        "(PID 4242). See also https://duckdb.org/docs/stable/connect/concurrency"
    )
    assert describe_duckdb_error(lock) == (
        "it is locked by another process (/usr/bin/python3.11 (PID 4242)); is another ingester or Dagster run using it?"
    )
    full = duckdb.IOException('IO Error: Could not write file "/w/wh.duckdb.wal": No space left on device')
    assert describe_duckdb_error(full) == "no space left on device"


def test_an_offsets_table_keyed_by_topic_is_rekeyed_by_group_keeping_its_rows():
    con = duckdb.connect()
    con.execute(
        f"""create table {OFFSETS_TABLE} (
            topic varchar not null, "partition" integer not null, next_offset bigint not null,
            consumer_group varchar, updated_at timestamp, primary key (topic, "partition"))"""
    )
    con.execute(f"insert into {OFFSETS_TABLE} values ('t', 0, 10, 'g1', null), ('t', 1, 7, null, null)")
    ensure_tables(con)
    assert stored_offsets(con, "t", "g1") == {0: 10}
    assert stored_offsets(con, "t", UNKNOWN_GROUP) == {1: 7}
    # now two groups can keep their own progress on the same partition
    con.execute(
        f"insert into {OFFSETS_TABLE} (consumer_group, topic, \"partition\", next_offset) values ('g2', 't', 0, 3)"
    )
    assert stored_offsets(con, "t", "g2") == {0: 3} and stored_offsets(con, "t", "g1") == {0: 10}
    assert migrate_offsets_table(con) is False  # already migrated: a no-op
    con.close()
