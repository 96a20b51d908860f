"""The causal chain's patterns, on records made here: each known pattern, and "unknown" otherwise."""

from __future__ import annotations

from datetime import UTC, datetime

from reliability.review.causes import (
    MISSING_LOAD,
    PRODUCER_RETRIES,
    SCHEMA_CHANGE,
    STUCK_CONSUMER,
    UNKNOWN,
    Evidence,
    Findings,
    KafkaRecord,
    five_whys,
    hypothesize,
    scan_duplicates,
    volume_drops,
)

T_MS = int(datetime(2026, 11, 20, 9, 0, tzinfo=UTC).timestamp() * 1000)
EV = Evidence("test", "q", "r")


def rec(partition: int, offset: int, key: str, value: str = "v") -> KafkaRecord:
    return KafkaRecord("shop.orders", partition, offset, T_MS + offset, key.encode(), value.encode())


def test_identical_copies_at_adjacent_offsets_are_one_run_each():
    records = [rec(0, 10, "7", "a"), rec(0, 11, "7", "a"), rec(0, 12, "8"), rec(1, 3, "9", "b"), rec(1, 4, "9", "b")]
    scan = scan_duplicates(records)
    assert [(r.partition, r.offsets, r.key) for r in scan.runs] == [(0, (10, 11), "7"), (1, (3, 4), "9")]
    assert scan.scattered == 0 and scan.adjacent_copies == 2
    assert scan.runs[0].first_at == datetime.fromtimestamp((T_MS + 10) / 1000, UTC)


def test_copies_far_apart_or_with_another_payload_are_not_adjacent_runs():
    scattered = scan_duplicates([rec(0, 1, "7", "a"), rec(0, 2, "8"), rec(0, 3, "7", "a")])
    assert scattered.runs == () and scattered.scattered == 1
    changed = scan_duplicates([rec(0, 1, "7", "a"), rec(0, 2, "7", "b")])  # same key, new payload: an update
    assert changed.runs == () and changed.scattered == 0


def findings(**kw) -> Findings:
    return Findings("raw_orders", kw.pop("fault_class", "duplicates"), [EV], **kw)


def test_adjacent_duplicates_point_at_the_producer_and_scattered_ones_do_not():
    adjacent = scan_duplicates([rec(0, 10, "7"), rec(0, 11, "7")])
    h = hypothesize(findings(kafka=adjacent, kafka_evidence=EV))
    assert h.cause == PRODUCER_RETRIES and h.evidence == (EV,)
    assert any("enable.idempotence" in a for a in h.actions)
    scattered = scan_duplicates([rec(0, 10, "7"), rec(0, 11, "8"), rec(0, 12, "7")])
    assert hypothesize(findings(kafka=scattered, kafka_evidence=EV)).cause == UNKNOWN


def test_other_patterns_and_unknown():
    assert hypothesize(findings(dlq_errors={"invalid_type": 40}, dlq_evidence=EV)).cause == SCHEMA_CHANGE
    assert hypothesize(findings(dlq_errors={"invalid_type": 4, "bad_json": 3}, dlq_evidence=EV)).cause == UNKNOWN
    stuck = findings(lag_statuses=["STALL"], lag_evidence=EV, dlq_growth=0)
    assert hypothesize(stuck).cause == STUCK_CONSUMER
    assert hypothesize(findings(lag_statuses=["STALL"], lag_evidence=EV, dlq_growth=12)).cause == UNKNOWN
    volume = {"2026-11-18": 1000, "2026-11-19": 980, "2026-11-20": 310, "2026-11-21": 1010}
    assert volume_drops(volume) == ["2026-11-20"]
    assert hypothesize(findings(volume=volume, volume_evidence=EV)).cause == MISSING_LOAD
    everywhere = {"2026-11-18": 100, "2026-11-19": 1000, "2026-11-20": 100, "2026-11-21": 1000}
    unknown = hypothesize(findings(volume=everywhere, volume_evidence=EV))
    assert unknown.cause == UNKNOWN and EV in unknown.evidence  # the gathered evidence is kept


def test_whys_mark_what_is_observed_and_what_is_hypothesis():
    adjacent = scan_duplicates([rec(0, 10, "7"), rec(0, 11, "7")])
    f = findings(kafka=adjacent, kafka_evidence=EV, upstream=[("raw_orders", True, EV), ("stg_orders", True, EV)])
    whys = five_whys(f, hypothesize(f))
    assert len(whys) == 5
    assert [w.hypothesis for w in whys] == [False, False, False, True, True]  # the adjacency is observed
    assert "raw_orders, the most upstream asset" in whys[1].answer
    assert whys[2].answer.startswith("1 duplicate message(s) are identical payloads with identical keys at adjacent")
    assert whys[3].answer.startswith(PRODUCER_RETRIES + ": ") and whys[3].evidence == (EV,)
    unknown = five_whys(findings(), hypothesize(findings()))
    assert unknown[-1].answer.startswith(UNKNOWN) and unknown[-1].hypothesis


def test_blast_radius_layers_point_every_edge_right():
    from reliability.review.postmortem import GraphNode
    from reliability.review.render import layers

    nodes = [GraphNode("raw_orders", "root", 0), GraphNode("stg_orders", "downstream", 1),
             GraphNode("stg_payments", "downstream", 1), GraphNode("fct_orders", "downstream", 2)]  # fmt: skip
    edges = [("raw_orders", "stg_orders"), ("stg_orders", "stg_payments"), ("stg_orders", "fct_orders"),
             ("stg_payments", "fct_orders")]  # fmt: skip
    layer = layers(nodes, edges)
    assert all(layer[a] < layer[b] for a, b in edges), layer
    assert layer == {"raw_orders": 0, "stg_orders": 1, "stg_payments": 2, "fct_orders": 3}
