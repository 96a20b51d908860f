"""The consumer loop: exactly-once ingestion of order events from Kafka into DuckDB, with a DLQ.

Where things live:
- `validation`: which payloads become rows (strict rules, the bulk and the per-message path);
- `warehouse`: the tables and the one transaction per batch (rows + rejects + next offsets), which is
  what makes ingestion exactly once; the consumer starts from the offsets stored there;
- `dead_letters`: publishing rejects to `<topic>.dlq`, exactly once, always within Kafka's size limit;
- here: consuming, pipelining batches to a writer thread, retrying transient broker errors, the CLI.

Run as `python -m reliability.kafka.ingest --topic shop.orders` (one micro-batch up to the current end
of the topic; `--forever` keeps going, riding out broker restarts), as `reliability kafka ingest`, or
through the Dagster asset in `reliability.kafka.defs`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

from reliability.clock import Clock, utcnow
from reliability.errors import UserFacingError
from reliability.kafka.clients import TRANSIENT_ERROR_NAMES, is_transient
from reliability.kafka.dead_letters import DeadLetterPublishError, DeadLetterQueue
from reliability.kafka.events import DEFAULT_TOPIC
from reliability.kafka.warehouse import (
    WarehouseWriter,
    ensure_tables,
    open_warehouse,
    spool_path,
    spool_payloads,
    stored_offsets,
)

DEFAULT_GROUP = "reliability.raw_orders"
METADATA_TIMEOUT_S = 10.0


class BrokerUnavailable(UserFacingError):
    """A transient broker error (unreachable, restarting, no leader yet): retrying may succeed."""


class TopicMissing(UserFacingError):
    """The topic does not exist (yet): an error for one run, waited for by `--forever`."""


def broker_error(exc: BaseException, doing: str, bootstrap: str | None) -> BaseException:
    """`exc` as a one-line BrokerUnavailable when it is a transient Kafka error, else unchanged."""
    from confluent_kafka import KafkaError, KafkaException

    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        err = exc.args[0]
        if is_transient(err.name(), err.retriable(), err.fatal()):
            where = f" at {bootstrap}" if bootstrap else ""
            return BrokerUnavailable(f"Kafka{where} unavailable while {doing}: {err.name()} ({err.str()})")
    return exc


@dataclass
class Backoff:
    """Exponential backoff for retries: `initial`, doubled per failure up to `maximum`; reset on success."""

    initial: float = 0.5
    maximum: float = 10.0
    _next: float = 0.0

    def delay(self) -> float:
        self._next = self.initial if self._next == 0.0 else min(self.maximum, self._next * 2)
        return self._next

    def reset(self) -> None:
        self._next = 0.0


@dataclass
class IngestStats:
    messages: int = 0
    rows: int = 0
    rejected: int = 0
    batches: int = 0
    dlq_published: int = 0
    dlq_recovered: int = 0
    seconds: float = 0.0
    rejected_by_error: dict[str, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    stop_reason: str = ""  # why the last run stopped, in words
    left: int = 0  # messages left before the end offsets when it stopped
    stalled: bool = False  # stopped because no message came although some were left
    error: str | None = None  # the error it stopped on, if any


def summary(stats: IngestStats, topic: str) -> str:
    """One line for people: what was ingested and why it stopped."""
    line = (
        f"ingested {stats.rows} row(s), rejected {stats.rejected} to {topic}.dlq "
        f"({stats.messages} message(s) in {stats.batches} batch(es), {stats.seconds:.1f}s)"
    )
    if stats.error:
        return f"{line}; stopped on an error: {stats.error}"
    return f"{line}; {stats.stop_reason}" if stats.stop_reason else line


class _Transaction:
    """Batches queued for the writer's next transaction, spooled for the bulk path as they arrive (in the
    consuming thread, so the writer thread only runs DuckDB)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.batches: list[tuple[list, list[bytes], dict[int, int]]] = []
        self.messages = 0
        try:
            self._file: BinaryIO | None = open(path, "wb")  # noqa: SIM115 - closed in take()
        except OSError:
            self._file = None

    def add(self, batch: tuple[list, list[bytes], dict[int, int]]) -> None:
        self.batches.append(batch)
        self.messages += len(batch[0])
        if self._file is not None and not spool_payloads(self._file, batch[1]):
            self.discard()

    def discard(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def take(self) -> tuple[list, list[bytes], dict[int, int], Path | None]:
        """The merged batch and its spool file (None: not spooled, validate per message)."""
        spooled = None
        if self._file is not None:
            try:
                self._file.close()
                spooled = self.path
            except OSError:
                pass
            self._file = None
        return (*_merge(self.batches), spooled)


def _merge(batches: list[tuple[list, list[bytes], dict[int, int]]]) -> tuple[list, list[bytes], dict[int, int]]:
    """Consecutive prepared batches as one (group commit); later next offsets win."""
    if len(batches) == 1:
        return batches[0]
    good: list = []
    payloads: list[bytes] = []
    next_offsets: dict[int, int] = {}
    for g, p, o in batches:
        good += g
        payloads += p
        next_offsets.update(o)
    return good, payloads, next_offsets


class Ingestor:
    """One consumer + one DuckDB connection; `run()` ingests until caught up or a limit is hit."""

    def __init__(
        self,
        warehouse: Path | str | None,
        topic: str = DEFAULT_TOPIC,
        group_id: str = DEFAULT_GROUP,
        bootstrap: str | None = None,
        batch_size: int = 50_000,
        con=None,
        clock: Clock = utcnow,
    ) -> None:
        from reliability.kafka import clients

        self.topic = topic
        self.dlq_topic = f"{topic}.dlq"
        self.group_id = group_id
        self.batch_size = batch_size
        self.bootstrap = bootstrap
        self.clock = clock
        self._own_con = con is None
        self.con = con if con is not None else open_warehouse(warehouse)
        ensure_tables(self.con)
        self.consumer = clients.consumer(
            group_id,
            bootstrap,
            **{
                "fetch.max.bytes": 52428800,
                "queued.max.messages.kbytes": 262144,
                "queued.min.messages": 200_000,  # prefetch deep: librdkafka fetches while DuckDB writes
                # Once the prefetch queue is full librdkafka pauses fetching for this long (default 1 s):
                # the queue then ran dry and consume() waited out its timeout several times per 1M messages.
                "fetch.queue.backoff.ms": 10,
                "fetch.wait.max.ms": 50,
            },
        )
        self.dead_letters = DeadLetterQueue(self.con, topic, group_id, bootstrap)
        # One spool file per transaction slot: two that pipelined transactions alternate between (the
        # consuming thread fills one while the writer reads the other), the last one for `process()`.
        spool = spool_path(self.con, warehouse, topic, group_id)
        self._spools = [spool.with_suffix(f".{i}.ndjson") for i in range(3)]
        self.writer = WarehouseWriter(self.con, topic, group_id, self.dlq_topic, self._spools)
        self.pipelined = os.environ.get("RELIABILITY_INGEST_PIPELINE", "1") == "1"
        self.on_batch: Callable[[IngestStats], None] | None = None  # after each committed batch (progress)
        self.on_first_batch: Callable[[], None] | None = None  # once, when the first messages arrived
        self.stats = IngestStats()
        self.next_offsets: dict[int, int] = {}  # written to DuckDB
        self.consumed: dict[int, int] = {}  # handed to the writer (may run one batch ahead)

    # -- set-up ---------------------------------------------------------------------------------------
    def _partitions(self) -> list[int]:
        try:
            md = self.consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S).topics.get(self.topic)
        except Exception as exc:
            raise broker_error(exc, f"reading the metadata of {self.topic}", self.bootstrap) from exc
        if (
            md is not None
            and md.error is not None
            and md.error.name() in TRANSIENT_ERROR_NAMES - {"UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC"}
        ):
            raise BrokerUnavailable(f"Kafka metadata of {self.topic} not ready: {md.error.name()}")
        if md is None or md.error is not None or not md.partitions:
            raise TopicMissing(f"Kafka topic {self.topic!r} does not exist (or has no partitions)")
        return sorted(md.partitions)

    def assign(self) -> None:
        """Assign every partition at the offset stored in DuckDB (beginning when none is stored)."""
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        stored = stored_offsets(self.con, self.topic, self.group_id)
        parts = self._partitions()
        self.next_offsets = {p: stored.get(p, OFFSET_BEGINNING) for p in parts}
        self.consumed = dict(self.next_offsets)
        self.consumer.assign([TopicPartition(self.topic, p, self.next_offsets[p]) for p in parts])

    # -- DLQ ------------------------------------------------------------------------------------------
    def recover_outbox(self) -> int:
        """Publish outbox rows a crash left unpublished, skipping those already in the DLQ topic."""
        try:
            recovered = self.dead_letters.recover()
        except Exception as exc:
            raise broker_error(exc, f"recovering dead letters of {self.topic}", self.bootstrap) from exc
        self.stats.dlq_recovered += recovered
        return recovered

    # -- the exactly-once step ------------------------------------------------------------------------
    def prepare(self, msgs: list):
        """Consumer-thread part of a batch: drop EOF and transient error events, collect payloads and
        next offsets. A lasting error (fatal, or e.g. authorisation) is raised."""
        from confluent_kafka import KafkaError, KafkaException

        good = msgs
        errors = [m for m in msgs if m.error() is not None]  # rare: copy the list only when there are some
        if errors:
            for m in errors:
                err = m.error()
                if err.code() != KafkaError._PARTITION_EOF and not is_transient(
                    err.name(), err.retriable(), err.fatal()
                ):
                    raise KafkaException(err)
            good = [m for m in msgs if m.error() is None]
        if not good:
            return None
        payloads = [m.value() or b"" for m in good]
        # Offsets only grow within a partition, so the last message of each partition gives its next offset:
        # walk back and stop once every assigned partition is seen.
        next_offsets: dict[int, int] = {}
        assigned = len(self.consumed)  # 0 before assign(): then walk all of them
        for m in reversed(good):
            p = m.partition()
            if p not in next_offsets:
                next_offsets[p] = m.offset() + 1
                if len(next_offsets) == assigned:
                    break
        self.consumed.update(next_offsets)
        return good, payloads, next_offsets

    def _write_returning_offsets(
        self, good: list, payloads: list[bytes], next_offsets: dict[int, int], spooled: Path | None
    ) -> dict[int, int]:
        """`write` for the writer thread; hands the committed offsets back to the consuming thread."""
        self.write(good, payloads, next_offsets, spooled)
        return next_offsets

    def write(
        self, good: list, payloads: list[bytes], next_offsets: dict[int, int], spooled: Path | None = None
    ) -> None:
        """Writer part of a batch (may run in a worker thread, one batch at a time, in order): one
        transaction (see `WarehouseWriter.write`), then the rejects are published to the DLQ."""
        now = self.clock().replace(tzinfo=None)
        written = self.writer.write(good, payloads, next_offsets, now, spooled)
        self.next_offsets.update(next_offsets)
        self.stats.messages += written.messages
        self.stats.rejected += len(written.rejected)
        self.stats.rows += written.rows
        self.stats.batches += 1
        for _, error, _ in written.rejected:
            self.stats.rejected_by_error[error] = self.stats.rejected_by_error.get(error, 0) + 1
        if self.on_batch is not None:
            self.on_batch(self.stats)
        if written.rejected:
            self.stats.dlq_published += self.dead_letters.publish()

    def _commit_to_kafka(self, next_offsets: dict[int, int]) -> None:
        """Mirror progress into Kafka's group offsets so lag tools see it (never read back).

        Called from the consuming thread only: a commit from the writer thread waits for the consumer's
        running `consume()` call (up to its timeout), which stalled every transaction."""
        from confluent_kafka import KafkaException, TopicPartition

        with contextlib.suppress(KafkaException):  # visibility only; correctness lives in DuckDB
            self.consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()], asynchronous=True
            )

    def _watermarks(self, partition: int) -> tuple[int, int]:
        from confluent_kafka import TopicPartition

        try:
            return self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=METADATA_TIMEOUT_S
            )
        except Exception as exc:
            raise broker_error(exc, f"reading the end offsets of {self.topic}", self.bootstrap) from exc

    def end_offsets(self) -> dict[int, int]:
        return {p: self._watermarks(p)[1] for p in self.next_offsets}

    def left_before(self, targets: dict[int, int]) -> int:
        """Messages (an upper bound: aborted ones count) between what was consumed and `targets`."""
        left = 0
        for p, end in targets.items():
            pos = self.consumed.get(p, -2)
            if pos < 0:  # not consumed yet: all of the partition is left
                low, _ = self._watermarks(p)
                left += max(0, end - low)
            else:
                left += max(0, end - pos)
        return left

    def caught_up(self, targets: dict[int, int]) -> bool:
        """Cheaper than `left_before(...) == 0`: stops at the first partition with messages left."""
        for p, end in targets.items():
            pos = self.consumed.get(p, -2)
            if pos < 0:  # not consumed yet: caught up only if the partition is empty
                low, _ = self._watermarks(p)
                if end > low:
                    return False
            elif pos < end:
                return False
        return True

    def run(
        self, max_seconds: float | None = None, max_messages: int | None = None, idle_timeout_s: float = 5.0
    ) -> IngestStats:
        """Ingest until the end offsets seen at start are reached (a micro-batch), or a limit is hit.

        Sets `stats.stop_reason` (and `stats.left`); an error is raised, with the stats kept so far."""
        started = time.monotonic()
        self.stats.error = None
        self.stats.stop_reason = ""
        self.stats.stalled = False
        try:
            self._run(started, max_seconds, max_messages, idle_timeout_s)
        except BaseException as exc:
            self.stats.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.stats.stop_reason = "stopped on an error"
            raise
        finally:
            self.stats.seconds = time.monotonic() - started
        return self.stats

    def _run(self, started: float, max_seconds: float | None, max_messages: int | None, idle_timeout_s: float) -> None:
        self.assign()
        self.recover_outbox()
        targets = self.end_offsets()
        self.stats.end_offsets = targets
        idle_since = time.monotonic()
        consumed = 0
        reason = "caught up with the end offsets seen at start"
        # Pipelined: while DuckDB (which releases the GIL) writes in the writer thread, this thread keeps
        # consuming; batches that arrive while the writer is busy are queued and go, merged, into its next
        # transaction, up to `batch_size` messages (group commit of partial batches: fewer commits when
        # messages trickle in). Transactions are written one at a time, in order, so a crash still leaves
        # a prefix of batches with matching offsets.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="duckdb-writer") as writer:
            pending: Future | None = None
            queued: _Transaction | None = None
            transactions = 0
            try:
                while not self.caught_up(targets):
                    if max_seconds is not None and time.monotonic() - started > max_seconds:
                        reason = f"stopped at --max-seconds {max_seconds:g}"
                        break
                    if max_messages is not None and consumed >= max_messages:
                        reason = f"stopped after {max_messages} message(s) (max_messages)"
                        break
                    limit = self.batch_size
                    if max_messages is not None:
                        limit = max(1, min(limit, max_messages - consumed))
                    msgs = self.consumer.consume(limit, timeout=0.5)
                    batch = self.prepare(msgs) if msgs else None
                    if batch is not None:
                        if consumed == 0 and self.on_first_batch is not None:
                            self.on_first_batch()
                            self.on_first_batch = None
                        consumed += len(batch[0])
                        idle_since = time.monotonic()
                        if not self.pipelined:
                            self.write(*batch)
                            self._commit_to_kafka(batch[2])
                            continue
                        if queued is None:  # its spool file is free: the writer is done with transaction n - 2
                            queued = _Transaction(self._spools[transactions % 2])
                            transactions += 1
                        queued.add(batch)
                        if pending is None or pending.done() or queued.messages >= self.batch_size:
                            if pending is not None:
                                self._commit_to_kafka(pending.result())
                            pending = writer.submit(self._write_returning_offsets, *queued.take())
                            queued = None
                    elif time.monotonic() - idle_since > idle_timeout_s:
                        # e.g. aborted transactions at the end of a partition never yield messages
                        reason = f"no message for {idle_timeout_s:g}s"
                        break
                if queued is not None:
                    if pending is not None:
                        self._commit_to_kafka(pending.result())
                    pending = writer.submit(self._write_returning_offsets, *queued.take())
                    queued = None
            finally:
                if queued is not None:
                    queued.discard()
                if pending is not None:
                    done = pending
                    pending = None
                    self._commit_to_kafka(done.result())
        self.stats.left = self.left_before(targets)
        self.stats.stalled = bool(self.stats.left) and reason.startswith("no message")
        if self.stats.stalled:
            reason += f" with up to {self.stats.left} message(s) left before the end offsets seen at start"
        self.stats.stop_reason = reason

    def close(self) -> None:
        try:
            self.consumer.close()
            for path in self._spools:
                path.unlink(missing_ok=True)
        finally:
            self.dead_letters.close()
            if self._own_con:
                self.con.close()


def run_retrying(
    ingestor: Ingestor,
    forever: bool = False,
    retry_for_s: float = 30.0,
    on_retry: Callable[[BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    **run_kwargs,
) -> IngestStats:
    """`ingestor.run()`, retried with backoff on transient broker errors (a restart, a leader moving).

    Exactly-once is kept across retries: each run starts again from the offsets stored in the warehouse.
    With `forever`, it keeps ingesting new messages and never gives up on a transient error (nor on a
    topic that does not exist yet); otherwise it stops when caught up, or raises once transient errors have
    lasted `retry_for_s`."""
    backoff = Backoff()
    failing_since: float | None = None
    while True:
        try:
            stats = ingestor.run(**run_kwargs)
        except (BrokerUnavailable, DeadLetterPublishError, TopicMissing) as exc:
            if isinstance(exc, TopicMissing) and not forever:
                raise
            now = time.monotonic()
            failing_since = failing_since if failing_since is not None else now
            if not forever and now - failing_since >= retry_for_s:
                raise
            delay = backoff.delay()
            if on_retry is not None:
                on_retry(exc, delay)
            sleep(delay)
            continue
        backoff.reset()
        failing_since = None
        if not forever:
            return stats
        sleep(0.2)


def ingest(
    warehouse: Path | str,
    topic: str = DEFAULT_TOPIC,
    group_id: str = DEFAULT_GROUP,
    bootstrap: str | None = None,
    **run_kwargs,
) -> IngestStats:
    """One micro-batch: open, ingest to the current end of the topic, close."""
    ingestor = Ingestor(
        warehouse,
        topic=topic,
        group_id=group_id,
        bootstrap=bootstrap,
        batch_size=run_kwargs.pop("batch_size", 50_000),
    )
    try:
        return ingestor.run(**run_kwargs)
    finally:
        ingestor.close()


def _print_retry(exc: BaseException, delay: float) -> None:
    print(f"{exc}; retrying in {delay:.1f}s", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """The ingestion CLI: prints one JSON line of stats (and one line for people on stderr); exit 1 when
    it stopped on an error or stalled with messages left, with a one-line error instead of a traceback."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", help="DuckDB file (default: settings warehouse_path)")
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--group", default=DEFAULT_GROUP)
    parser.add_argument("--bootstrap", help="default: KAFKA_BOOTSTRAP_SERVERS or the local broker")
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--max-seconds", type=float)
    parser.add_argument("--idle-timeout", type=float, default=5.0)
    parser.add_argument("--retry-for", type=float, default=30.0, help="seconds to retry transient broker errors")
    parser.add_argument("--forever", action="store_true", help="keep consuming new messages, ride out broker restarts")
    parser.add_argument("--progress", action="store_true", help="print a JSON line after each committed batch")
    args = parser.parse_args(argv)
    from confluent_kafka import KafkaException

    # SIGTERM (how a service manager stops `--forever`) ends it like Ctrl-C: the batch being written is
    # committed, the consumer closed and the spool files removed.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
    ingestor: Ingestor | None = None
    try:
        warehouse = args.warehouse
        if warehouse is None:
            from reliability.settings import get_settings

            warehouse = get_settings().warehouse_path
            Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
        bootstrap = args.bootstrap
        if bootstrap is None:
            from reliability.kafka.broker import bootstrap_servers

            bootstrap = bootstrap_servers()
        ingestor = Ingestor(
            warehouse, topic=args.topic, group_id=args.group, bootstrap=bootstrap, batch_size=args.batch_size
        )
        if args.progress:
            ingestor.on_first_batch = lambda: print(json.dumps({"first_batch": "started"}), flush=True)
            ingestor.on_batch = lambda st: print(json.dumps({"batches": st.batches, "rows": st.rows}), flush=True)
        stats = run_retrying(
            ingestor,
            forever=args.forever,
            retry_for_s=args.retry_for,
            on_retry=_print_retry,
            max_seconds=args.max_seconds,
            idle_timeout_s=args.idle_timeout,
        )
    except (UserFacingError, KafkaException) as exc:
        if ingestor is not None:
            print(json.dumps(asdict(ingestor.stats)), flush=True)
            print(summary(ingestor.stats, args.topic), file=sys.stderr, flush=True)
        else:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if ingestor is not None:
            with contextlib.suppress(Exception):
                ingestor.close()
    print(json.dumps(asdict(stats)), flush=True)
    print(summary(stats, args.topic), file=sys.stderr, flush=True)
    return 1 if stats.stalled else 0


if __name__ == "__main__":
    sys.exit(main())
