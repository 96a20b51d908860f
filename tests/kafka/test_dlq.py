"""Handling dead letters: the pure parts, and replay / archive on a real DuckDB warehouse (no broker).

The warehouse test fills the outbox as ingestion's transaction does, then replays through the same
per-message validation; "the fix" is the consumer learning a status the producers started to send.
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pytest

from reliability.errors import UserFacingError
from reliability.kafka import validation
from reliability.kafka.dlq import (
    ARCHIVED,
    DROPPED,
    REPLAYED,
    DeadLetterView,
    day_windows,
    escape_bytes,
    list_rows,
    parse_positions,
    partition_replay,
    producer_copies,
    select_letters,
    window_offset,
)
from reliability.kafka.dlq_ops import KafkaReplay, archive, drop_producer_copies, load_dead_letters, replay
from reliability.kafka.events import ORDER_STATUSES, encode, order_event
from reliability.kafka.warehouse import HANDLED_TABLE, OUTBOX_TABLE, ensure_tables, unhandled_dlq_depth

NOW = datetime(2026, 2, 4, 9, 30, tzinfo=UTC)
TOPIC = "shop.orders"


def _view(partition: int, offset: int, handled: str | None = None) -> DeadLetterView:
    return DeadLetterView(partition, offset, "invalid_json", "x", b"k", b"{", None, True, handled)


def test_hostile_bytes_are_escaped_never_passed_to_the_terminal():
    hostile = b"\x1b[31mred\x1b[0m \xe2\x80\xaeevil \xff\xfe\x00 caf\xc3\xa9"
    text = escape_bytes(hostile)
    assert "\x1b" not in text and "\u202e" not in text and "\x00" not in text
    assert text == "\\x1b[31mred\\x1b[0m \\u202eevil \\xff\\xfe\\x00 café"
    assert escape_bytes(None) == "-" and escape_bytes(b"a" * 50, 10) == "aaaaaaa..."
    (row,) = list_rows([DeadLetterView(0, 3, "invalid_json", "\x1b[2J", b"\x1b]0;x\x07", b"{", None, True)])
    assert all("\x1b" not in cell and "\x07" not in cell for cell in row)


def test_positions_name_dead_letters_and_a_bare_offset_must_be_unique():
    letters = [_view(0, 5), _view(1, 5), _view(1, 9, ARCHIVED)]
    assert parse_positions(["0:5, 1:9", "7", "0:5"]) == [(0, 5), (1, 9), (None, 7)]
    assert select_letters(letters, None, TOPIC) == [letters[0], letters[1]]  # the unhandled ones
    assert select_letters(letters, [(None, 9)], TOPIC) == [letters[2]]
    with pytest.raises(UserFacingError, match=r"offset 5 names 2 dead letters .* \(0:5, 1:5\): give PARTITION:OFFSET"):
        select_letters(letters, [(None, 5)], TOPIC)
    with pytest.raises(UserFacingError, match="no dead letter of shop.orders at 2:5"):
        select_letters(letters, [(2, 5)], TOPIC)
    for bad in ("x", "1:-2", "a:3"):
        with pytest.raises(UserFacingError, match="dead letter"):
            parse_positions([bad])


def test_replay_window_days_and_offsets_per_partition():
    feb3 = int(datetime(2026, 2, 3, tzinfo=UTC).timestamp() * 1000)
    assert day_windows(["2026-02-04", "2026-02-03", "2026-02-06"]) == [
        (feb3, feb3 + 2 * 86_400_000),
        (feb3 + 3 * 86_400_000, feb3 + 4 * 86_400_000),
    ]
    with pytest.raises(UserFacingError, match="'2026-02-03-10:00'.*in days"):
        day_windows(["2026-02-03-10:00"])
    assert window_offset(-1, 120) == 120 and window_offset(40, 120) == 40
    # offsets 10..30 of partition 0; ingestion stored 25: 10..24 were rows or dead letters, 25..29 are not ingested
    part = partition_replay(0, 10, 30, 25, unhandled=[3, 12, 20, 27], handled=[15])
    assert (part.dead_letters, part.handled, part.rows, part.not_ingested, part.messages) == ((12, 20), 1, 12, 5, 20)
    assert part.line() == ("partition 0: offsets 10..30 (20 message(s)): 12 already row(s), 2 dead letter(s) to "
                           "replay, 1 already handled, 5 not ingested yet")  # fmt: skip
    nothing_yet = partition_replay(1, 0, 8, None, unhandled=[], handled=[])
    assert (nothing_yet.rows, nothing_yet.not_ingested) == (0, 8)
    # the incident timeline gets one line; the offsets per partition stay in the plan's lines and data
    copies = partition_replay(1, 0, 8, 8, unhandled=[], handled=[], copies=[3, 6])
    plan = KafkaReplay("shop.orders", ("2026-02-03",), [part, copies], drop_copies=True)
    assert plan.summary() == ("replay shop.orders for 2026-02-03: 28 message(s) in 2 partition(s); "
                              "2 dead letter(s) to replay, 2 producer copy(ies) to drop")  # fmt: skip
    assert len(plan.lines()) == 3


def test_a_producer_copy_is_an_identical_key_and_payload_at_a_later_offset_of_the_same_partition():
    a, b = encode(order_event(1, 1)), encode(order_event(1, 2))
    changed = encode({**order_event(1, 1), "status": "returned"})
    messages = [
        (0, 0, b"1", a), (0, 1, b"1", a),  # the retried batch: adjacent copy
        (0, 2, b"2", b), (0, 3, b"1", changed),  # same key, another payload: a conflict, kept
        (0, 4, b"1", a),  # far from the original, still identical: a copy
        (1, 0, b"1", a),  # another partition: not a copy of partition 0's message
        (1, 1, None, b), (1, 2, b"", b), (1, 3, None, b),  # no key and an empty key differ
    ]  # fmt: skip
    assert producer_copies(reversed(messages)) == {(0, 1): 0, (0, 4): 0, (1, 3): 1}


def test_replay_window_with_producer_copies_sorts_them_apart():
    # offsets 0..10 all ingested: 3 and 7 are copies (7 was also dead-lettered), 5 a dead letter, 8 a copy
    # dropped by an earlier replay (handled)
    part = partition_replay(0, 0, 10, 10, unhandled=[5, 7], handled=[8], copies=[3, 7, 8])
    assert (part.copies, part.dead_letters, part.handled, part.rows) == ((3, 7), (5,), 1, 6)
    assert part.line().endswith("0 not ingested yet, 2 producer copy(ies) to drop")
    assert partition_replay(0, 0, 10, 10, [], []).copies is None  # not looked for: the line is unchanged


def test_dropping_producer_copies_removes_one_row_per_copy_never_the_original(tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    ensure_tables(con)
    a, b, c = (encode(order_event(1, i)) for i in (1, 2, 3))
    # as exactly-once ingestion stored it: order 1 three times (two copies), 2 twice, 3 once
    validation.validate_payloads(con, [a, a, b, a, b, c])
    con.execute(validation.insert_valid_sql(), [NOW.replace(tzinfo=None)])
    bad_copy = encode(order_event(1, 4))[:-3]  # a cut-off message sent twice: both dead letters
    con.executemany(
        f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset, dlq_topic, error,
                payload, rejected_at) values (?, 0, ?, 'dlq', 'invalid_json', ?, ?)""",
        [[TOPIC, o, bad_copy, NOW.replace(tzinfo=None)] for o in (6, 7)],
    )
    copies = {(0, 1): (0, a), (0, 3): (0, a), (0, 4): (2, b), (0, 7): (6, bad_copy)}
    assert drop_producer_copies(con, TOPIC, copies, now=NOW, actor="ann", incident="INC-9") == 3
    assert _orders(con) == [1, 2, 3]
    handled = con.execute(f"select source_offset, action, reason from {HANDLED_TABLE} order by 1").fetchall()
    assert handled == [(1, DROPPED, "producer copy of 0:0 (identical key and payload)"),
                       (3, DROPPED, "producer copy of 0:0 (identical key and payload)"),
                       (4, DROPPED, "producer copy of 0:2 (identical key and payload)"),
                       (7, DROPPED, "producer copy of 0:6 (identical key and payload)")]  # fmt: skip
    assert unhandled_dlq_depth(con, TOPIC) == 1  # the dead-lettered copy is handled; its original is not
    # the same copies again: their handled rows exist, so nothing of it commits (the rows stay)
    with pytest.raises(UserFacingError, match="nothing of this one was committed"):
        drop_producer_copies(con, TOPIC, {(0, 1): (0, a), (0, 8): (0, a)}, now=NOW, actor="ann")
    assert _orders(con) == [1, 2, 3]
    # more copies named than rows beyond the original: the original's row always stays
    assert drop_producer_copies(con, TOPIC, {(0, 9): (0, a), (0, 10): (0, a)}, now=NOW, actor="ann") == 0
    assert _orders(con) == [1, 2, 3]
    con.close()


@pytest.fixture
def warehouse():
    con = duckdb.connect(":memory:")
    ensure_tables(con)
    good = encode(order_event(1, 1))
    refunded = encode({**order_event(1, 2), "status": "refunded"})  # a status the consumer does not know yet
    bad_json = encode(order_event(1, 3))[:-5]
    con.execute(f"insert into {validation.TARGET_TABLE} (order_id, status) values (1, 'placed')")
    rows = [(0, 1, "invalid_status", refunded), (0, 2, "invalid_json", bad_json), (1, 0, "invalid_status", refunded)]
    con.executemany(
        f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset, dlq_topic, error,
                payload, rejected_at, published) values (?, ?, ?, ?, ?, ?, ?, true)""",
        [[TOPIC, p, o, f"{TOPIC}.dlq", e, payload, NOW.replace(tzinfo=None)] for p, o, e, payload in rows],
    )
    yield con, good
    con.close()


@pytest.fixture
def fixed(monkeypatch):
    """The fix deployed: the consumer accepts `refunded` (same rules, one more status)."""
    monkeypatch.setattr(validation, "ORDER_STATUSES", (*ORDER_STATUSES, "refunded"))
    monkeypatch.setattr(validation, "PER_MESSAGE_SQL", "create or replace temp table _checked as\n"
                        + validation.rules_sql(validation._PER_MESSAGE_SOURCE))  # fmt: skip


def _letters(con, positions=None):
    chosen = select_letters(load_dead_letters(con, TOPIC), positions, TOPIC)
    return [(d.partition, d.offset, d.payload) for d in chosen]


def _orders(con) -> list[int]:
    return [r[0] for r in con.execute("select order_id from raw_orders order by order_id").fetchall()]


def test_replay_before_the_fix_changes_nothing_and_counts_each_dead_letter_once(warehouse):
    con, _ = warehouse
    outcome = replay(con, TOPIC, _letters(con), now=NOW, actor="ann")
    assert outcome.replayed == [] and [(p, o, e) for p, o, e, _ in outcome.still_invalid] == [
        (0, 1, "invalid_status"), (0, 2, "invalid_json"), (1, 0, "invalid_status")]  # fmt: skip
    assert _orders(con) == [1] and unhandled_dlq_depth(con, TOPIC) == 3
    assert con.execute(f"select count(*) from {OUTBOX_TABLE}").fetchone()[0] == 3  # no second dead letter


def test_replay_after_the_fix_is_exactly_once_and_archive_empties_the_depth(warehouse, fixed):
    con, _ = warehouse
    outcome = replay(con, TOPIC, _letters(con), now=NOW, actor="ann", incident="INC-4")
    assert outcome.replayed == [(0, 1), (1, 0)] and [(p, o) for p, o, *_ in outcome.still_invalid] == [(0, 2)]
    assert _orders(con) == [1, 2, 2]  # two messages of order 2 (one per partition): each became one row
    assert unhandled_dlq_depth(con, TOPIC) == 1
    again = replay(con, TOPIC, _letters(con, [(0, 1), (1, 0), (0, 2)]), now=NOW, actor="ann")
    assert again.replayed == [] and again.skipped == [(0, 1), (1, 0)]  # handled: never a second row
    assert _orders(con) == [1, 2, 2]

    assert archive(con, TOPIC, [(0, 2), (0, 1)], reason="truncated by the old proxy", now=NOW, actor="ann",
                   incident="INC-4") == [(0, 2)]  # fmt: skip
    assert unhandled_dlq_depth(con, TOPIC) == 0
    handled = {(d.position, d.handled, d.reason) for d in load_dead_letters(con, TOPIC)}
    assert handled == {("0:1", REPLAYED, None), ("1:0", REPLAYED, None),
                       ("0:2", ARCHIVED, "truncated by the old proxy")}  # fmt: skip
    with pytest.raises(UserFacingError, match="--reason"):
        archive(con, TOPIC, [(0, 2)], reason="  ", now=NOW, actor="ann")


def test_rows_and_handled_markers_commit_together(warehouse, fixed):
    con, good = warehouse
    refunded = con.execute(f"select payload from {OUTBOX_TABLE} where source_offset = 1").fetchone()[0]
    # the same dead letter twice in one replay: its second handled row breaks the key, so the
    # transaction (rows included) rolls back: nothing half-done
    with pytest.raises(UserFacingError, match="nothing of this one was committed"):
        replay(con, TOPIC, [(0, 1, refunded), (0, 1, refunded)], now=NOW, actor="ann")
    assert _orders(con) == [1] and con.execute(f"select count(*) from {HANDLED_TABLE}").fetchone()[0] == 0
    # a message that became a row is no dead letter: replaying it would make a second row
    with pytest.raises(UserFacingError, match="0:7 of shop.orders are not dead letters"):
        replay(con, TOPIC, [(0, 7, good)], now=NOW, actor="ann")


def test_cli_lists_shows_with_hostile_bytes_escaped_and_replays(tmp_path, capsys, monkeypatch):
    import json

    from reliability.cli import main

    monkeypatch.setenv("RELIABILITY_ACTOR", "ann")
    path = tmp_path / "wh.duckdb"
    hostile = b'{"status": "\x1b[2J\x1b]0;owned\x07", "x": "\xe2\x80\xae\xff"}'
    with duckdb.connect(str(path)) as con:
        ensure_tables(con)
        con.executemany(
            f"""insert into {OUTBOX_TABLE} (source_topic, source_partition, source_offset, dlq_topic, error,
                    detail, message_key, payload, rejected_at, published) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [[TOPIC, 0, 7, f"{TOPIC}.dlq", "invalid_status", "status=\x1b[2J", b"\x1b[31mk", hostile,
              NOW.replace(tzinfo=None), True],
             [TOPIC, 1, 7, f"{TOPIC}.dlq", "invalid_json", None, None, b"{", NOW.replace(tzinfo=None), False]],
        )  # fmt: skip
    wh = ["--warehouse", str(path)]
    assert main(["kafka", "dlq", "list", *wh]) == 0
    out = capsys.readouterr().out
    assert "2 listed, 2 not yet handled" in out and "invalid_status" in out and "\x1b" not in out
    assert main(["kafka", "dlq", "show", "0:7", *wh]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07" in out and "\\u202e\\xff" in out
    assert "dlq.source.offset: 7" in out and "dlq.error: invalid_status" in out
    assert main(["kafka", "dlq", "show", "7", *wh]) == 1  # two dead letters at offset 7: ambiguous
    assert "give PARTITION:OFFSET" in capsys.readouterr().err
    assert main(["kafka", "dlq", "show", "--json", "1:7", *wh]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["payload"], shown["payload_base64"], shown["published"]) == ("{", "ew==", False)

    assert main(["kafka", "dlq", "replay", "--offsets", "1:7", *wh]) == 0
    assert "replayed 0 dead letter(s) into rows; 1 still fail validation (invalid_json)" in capsys.readouterr().out
    assert main(["kafka", "dlq", "archive", "--reason", "garbage from a test client", *wh]) == 0
    assert "archived 2 dead letter(s)" in capsys.readouterr().out
    assert main(["kafka", "dlq", "list", "--json", *wh]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["partition"], d["offset"], d["handled"], d["handled_reason"]) for d in listed] == [
        (0, 7, "archived", "garbage from a test client"), (1, 7, "archived", "garbage from a test client")]  # fmt: skip
    assert main(["kafka", "dlq", "list", "--unhandled", "--json", *wh]) == 0
    assert json.loads(capsys.readouterr().out) == []
