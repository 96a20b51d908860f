"""Sample consumer groups from a real cluster for `reliability.kafka.lag`: few calls, all concurrent.

One tick = list groups (1 call) + describe them (1 call) + one `list_consumer_group_offsets` per group,
issued together (the API takes one group per request) + topic metadata (1 call) + one `list_offsets`
for every partition involved. Failures never raise out of `take_sample`: an unreachable broker is a
`Sample(error=...)`, which the evaluation turns into ERR for every watched group.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass

from reliability.kafka.lag import GroupSample, Sample, TopicPartition

INTERNAL_GROUP_SUFFIXES = (".dlq-recovery",)


@dataclass(frozen=True)
class WatchConfig:
    """Which groups to watch: explicit names, or glob/regex patterns; everything when both are empty."""

    groups: tuple[str, ...] = ()
    pattern: str | None = None
    timeout_s: float = 5.0
    required: tuple[str, ...] = ()  # always reported (NOT_FOUND when missing), e.g. groups feeding assets

    def matches(self, group: str) -> bool:
        if group.endswith(INTERNAL_GROUP_SUFFIXES):
            return False
        if group in self.required:
            return True
        if not self.groups and not self.pattern:
            return True
        if group in self.groups:
            return True
        if self.pattern:
            if any(ch in self.pattern for ch in "*?[") and fnmatch.fnmatchcase(group, self.pattern):
                return True
            try:
                return re.fullmatch(self.pattern, group) is not None
            except re.error:
                return False
        return False


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    if "_TRANSPORT" in text or "_TIMED_OUT" in text or "Connection refused" in text or "timed out" in text:
        return f"Kafka cluster unreachable: {text}"
    return text


def take_sample(admin, watch: WatchConfig = WatchConfig()) -> Sample:
    """Committed offsets of the watched groups and the log-end offsets of their partitions."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec

    timeout = watch.timeout_s
    try:
        listing = admin.list_consumer_groups(request_timeout=timeout).result(timeout=timeout + 1)
        found = {g.group_id: g for g in listing.valid}
        names = sorted(g for g in found if watch.matches(g))
        missing = [g for g in (*watch.groups, *watch.required) if g not in found]
        groups: dict[str, GroupSample] = {
            g: GroupSample(committed={}, members=0, state="NOT_FOUND", error=None) for g in missing
        }
        if not names:
            return Sample(groups=groups, log_end={})
        offset_futures = {
            g: admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(g)], request_timeout=timeout)[g]
            for g in names
        }
        describe_futures = admin.describe_consumer_groups(names, request_timeout=timeout)
        metadata = admin.list_topics(timeout=timeout)
        committed: dict[str, dict[TopicPartition, int | None]] = {}
        members: dict[str, int | None] = {}
        states: dict[str, str | None] = {}
        errors: dict[str, str] = {}
        for g in names:
            try:
                res = offset_futures[g].result(timeout=timeout + 1)
                committed[g] = {
                    (tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None)
                    for tp in res.topic_partitions
                    if tp.error is None
                }
            except KafkaException as exc:
                errors[g] = _error_text(exc)
                continue
            try:
                desc = describe_futures[g].result(timeout=timeout + 1)
                members[g] = len(desc.members)
                states[g] = getattr(desc.state, "name", str(desc.state))
                for member in desc.members:  # assigned partitions without a commit are shown, as "-"
                    assignment = getattr(member, "assignment", None)
                    for tp in getattr(assignment, "topic_partitions", None) or []:
                        committed[g].setdefault((tp.topic, tp.partition), None)
            except KafkaException:
                members[g], states[g] = None, getattr(found[g], "state", None) and found[g].state.name
        # every partition of every topic a group reads, so partitions never committed are reported too
        for g in committed:
            for topic in {t for t, _ in committed[g]}:
                md = metadata.topics.get(topic)
                if md is not None and md.error is None:
                    for p in md.partitions:
                        committed[g].setdefault((topic, p), None)
        wanted = {tp for per_group in committed.values() for tp in per_group}
        log_end: dict[TopicPartition, int] = {}
        if wanted:
            futures = admin.list_offsets(
                {TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted}, request_timeout=timeout
            )
            for tp, fut in futures.items():
                try:
                    log_end[(tp.topic, tp.partition)] = fut.result(timeout=timeout + 1).offset
                except KafkaException:
                    continue  # partition leaderless right now: lag unknown for it this tick
        for g in names:
            if g in errors:
                groups[g] = GroupSample(committed={}, error=errors[g])
            else:
                groups[g] = GroupSample(committed=committed[g], members=members.get(g), state=states.get(g))
        return Sample(groups=groups, log_end=log_end)
    except KafkaException as exc:
        return Sample(groups={}, log_end={}, error=_error_text(exc))
    except Exception as exc:  # futures time out with concurrent.futures.TimeoutError, never crash a tick
        return Sample(groups={}, log_end={}, error=f"Kafka cluster unreachable or not answering: {exc!r}")


def evaluate_once(
    bootstrap: str | None = None,
    watch: WatchConfig = WatchConfig(),
    samples: int = 1,
    interval_s: float = 1.0,
    groups: Sequence[str] = (),
):
    """Sample `samples` times and evaluate (for the CLI and manual check runs, which keep no state)."""
    import time

    from reliability.kafka import clients, lag

    if groups:
        watch = WatchConfig(groups=tuple(groups), pattern=None, timeout_s=watch.timeout_s)
    admin = clients.admin(bootstrap)
    state = lag.LagState()
    results: list = []
    for i in range(samples):
        if i:
            time.sleep(interval_s)
        state, results = lag.advance(state, take_sample(admin, watch), time.time())
    if groups:
        results = [r for r in results if r.group in set(groups)]
    return results
