"""Dead letters as people handle them, pure: naming them, showing them safely, and the replay window.

A dead letter is named by the position of its source message, `PARTITION:OFFSET` (a bare `OFFSET` when
only one dead letter of the topic has it). Its bytes come from a message anybody could send, so they are
shown with every byte that is not printable UTF-8 text escaped (`\\xff`, `\\x1b`): an ANSI escape or a bidi
override in a payload never reaches the terminal as such.

Replay from Kafka (reconciliation of a Kafka-fed root): the incident's bad days become time windows, the
broker's `offsets_for_times` turns each into the first offset per partition, and `partition_replay`
sorts the offsets of a window by what exactly-once ingestion already did with them. Below the offset
stored with the rows, every message is either a row or a dead letter (the outbox row of its batch's
transaction): rows are left alone, unhandled dead letters are replayed, and the rest is ordinary
ingestion's. That is what makes the replay idempotent. I/O lives in `reliability.kafka.dlq_ops`.

Producer copies (a `duplicates` incident): a producer without idempotence that retries a batch whose
acknowledgement was lost writes it again, so the topic holds the same message twice and exactly-once
ingestion faithfully stores both. Re-reading the bad days would re-read the copies too, so the replay of
a duplicates incident applies `CopyFinder`: a message whose key AND payload are identical to an earlier
offset's of the same partition (in the replayed window) is the copy an idempotent producer would have
prevented. It is dropped: its row is removed (never the original's), it is not replayed when it was a
dead letter, and it is marked handled (`dropped`) so a second replay finds nothing left to drop. A
message with the same key but another payload is a different event (a conflict, not a copy): kept.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from reliability.errors import UserFacingError
from reliability.terminal import printable

REPLAYED = "replayed"
ARCHIVED = "archived"
DROPPED = "dropped"  # a producer copy: its row removed, or never made into one
DAY_MS = 86_400_000


@dataclass(frozen=True)
class DeadLetterView:
    """One dead letter as the warehouse keeps it (outbox row) and what was done with it (handled row)."""

    partition: int
    offset: int
    error: str
    detail: str | None
    key: bytes | None
    payload: bytes | None
    rejected_at: datetime | None
    published: bool
    handled: str | None = None  # REPLAYED or ARCHIVED; None while it still counts in kafka_dlq_depth
    reason: str | None = None
    incident: str | None = None
    handled_at: datetime | None = None

    @property
    def position(self) -> str:
        return f"{self.partition}:{self.offset}"

    def summary(self) -> dict[str, object]:
        """The fields `dlq list --json` gives (text escaped like on the terminal)."""
        return {
            "partition": self.partition, "offset": self.offset, "key": escape_bytes(self.key, 60),
            "error": self.error, "reason": printable(self.detail or ""),
            "rejected_at": self.rejected_at.isoformat() if self.rejected_at else None,
            "handled": self.handled, "handled_reason": self.reason, "incident": self.incident,
        }  # fmt: skip

    def details(self, headers: Sequence[tuple[str, bytes]]) -> dict[str, object]:
        """Everything `dlq show --json` gives: the summary, the DLQ headers and the exact bytes (base64)."""
        return {
            **self.summary(),
            "handled_at": self.handled_at.isoformat() if self.handled_at else None,
            "published": self.published,
            "payload": escape_bytes(self.payload),
            "payload_base64": base64.b64encode(self.payload).decode() if self.payload is not None else None,
            "key_base64": base64.b64encode(self.key).decode() if self.key is not None else None,
            "headers": {name: escape_bytes(value) for name, value in headers},
        }


def escape_bytes(data: bytes | None, limit: int | None = None) -> str:
    """`data` as one line of safe text: UTF-8 where it is, `\\xNN` for other bytes and for control or
    format characters; cut to `limit` characters with `...` (None shows as `-`)."""
    if data is None:
        return "-"
    text = printable(bytes(data).decode("utf-8", errors="backslashreplace"))
    if limit is not None and len(text) > limit:
        return text[: max(0, limit - 3)] + "..."
    return text


def parse_position(text: str) -> tuple[int | None, int]:
    """`PARTITION:OFFSET` or `OFFSET` -> (partition or None, offset); a one-line error naming the value."""
    part, sep, off = text.strip().rpartition(":")
    try:
        partition = int(part) if sep else None
        offset = int(off)
    except ValueError:
        raise UserFacingError(f"dead letter {text!r}: expected PARTITION:OFFSET or OFFSET, e.g. 0:17") from None
    if offset < 0 or (partition is not None and partition < 0):
        raise UserFacingError(f"dead letter {text!r}: partition and offset are never negative")
    return partition, offset


def parse_positions(texts: Iterable[str]) -> list[tuple[int | None, int]]:
    """`--offsets 0:12,1:5 --offsets 7` -> positions, in order, without repeats."""
    out: list[tuple[int | None, int]] = []
    for text in texts:
        for item in text.split(","):
            if item.strip():
                position = parse_position(item)
                if position not in out:
                    out.append(position)
    if not out:
        raise UserFacingError("--offsets: name at least one dead letter (PARTITION:OFFSET)")
    return out


def select_letters(letters: Sequence[DeadLetterView], positions: Sequence[tuple[int | None, int]] | None,
                   topic: str) -> list[DeadLetterView]:  # fmt: skip
    """The dead letters `positions` name (None: every unhandled one). A bare offset must be unique."""
    if positions is None:
        return [d for d in letters if d.handled is None]
    by_position = {(d.partition, d.offset): d for d in letters}
    chosen: list[DeadLetterView] = []
    for partition, offset in positions:
        if partition is not None:
            found = [by_position[(partition, offset)]] if (partition, offset) in by_position else []
        else:
            found = [d for d in letters if d.offset == offset]
        label = f"{partition}:{offset}" if partition is not None else str(offset)
        if not found:
            raise UserFacingError(f"no dead letter of {topic} at {label} (see: reliability kafka dlq list)")
        if len(found) > 1:
            where = ", ".join(d.position for d in found)
            raise UserFacingError(f"offset {offset} names {len(found)} dead letters of {topic} ({where}): "
                                  "give PARTITION:OFFSET")  # fmt: skip
        if found[0] not in chosen:
            chosen.append(found[0])
    return chosen


def list_rows(letters: Iterable[DeadLetterView]) -> list[tuple[str, ...]]:
    """Rows of `dlq list`: position, key, error class, reason, when, handled."""
    rows = []
    for d in letters:
        handled = "no" if d.handled is None else f"{d.handled}" + (f" ({d.incident})" if d.incident else "")
        when = d.rejected_at.strftime("%Y-%m-%d %H:%M:%S") if d.rejected_at else "-"
        rows.append((str(d.partition), str(d.offset), escape_bytes(d.key, 24), d.error,
                     printable(d.detail or "")[:60], when, handled))  # fmt: skip
    return rows


LIST_COLUMNS = ("PARTITION", "OFFSET", "KEY", "ERROR", "REASON", "REJECTED AT", "HANDLED")


# ------------------------------------------------------------------------------------ replay window
def day_windows(days: Sequence[str]) -> list[tuple[int, int]]:
    """The incident's bad days (`YYYY-MM-DD`, UTC) as [start, end) windows in epoch milliseconds, days that
    follow each other merged into one window."""
    parsed = []
    for key in days:
        try:
            parsed.append(date.fromisoformat(key))
        except ValueError:
            raise UserFacingError(f"partition {key!r}: a Kafka replay window is given in days (YYYY-MM-DD)") from None
    windows: list[tuple[int, int]] = []
    for day in sorted(set(parsed)):
        start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
        if windows and windows[-1][1] == start:
            windows[-1] = (windows[-1][0], start + DAY_MS)
        else:
            windows.append((start, start + DAY_MS))
    return windows


def window_offset(found: int, high_watermark: int) -> int:
    """An `offsets_for_times` answer as an offset: -1 (no message at or after the time) is the log end."""
    return high_watermark if found < 0 else min(found, high_watermark)


@dataclass(frozen=True)
class PartitionReplay:
    """One partition's part of a replay window, sorted by what exactly-once ingestion did with it."""

    partition: int
    start: int  # first offset of the window (offsets_for_times of its start)
    end: int  # first offset after it
    stored_next: int  # the next offset stored with the rows: everything below was ingested once
    dead_letters: tuple[int, ...]  # unhandled dead letters in the window: replayed
    handled: int  # dead letters replayed or archived, copies dropped, in the window: left alone
    rows: int  # messages in the window that became rows: left alone
    not_ingested: int  # at or after the stored offset: ordinary ingestion's (paused while contained)
    copies: tuple[int, ...] | None = None  # producer copies to drop (None: not looked for)

    @property
    def messages(self) -> int:
        return max(0, self.end - self.start)

    def line(self) -> str:
        copies = "" if self.copies is None else f", {len(self.copies)} producer copy(ies) to drop"
        return (f"partition {self.partition}: offsets {self.start}..{self.end} ({self.messages} message(s)): "
                f"{self.rows} already row(s), {len(self.dead_letters)} dead letter(s) to replay, "
                f"{self.handled} already handled, {self.not_ingested} not ingested yet{copies}")  # fmt: skip

    def to_dict(self) -> dict[str, object]:
        return {"partition": self.partition, "start": self.start, "end": self.end, "stored_next": self.stored_next,
                "messages": self.messages, "rows": self.rows, "dead_letters": list(self.dead_letters),
                "handled": self.handled, "not_ingested": self.not_ingested,
                "copies": None if self.copies is None else list(self.copies)}  # fmt: skip


def ingested_range(start: int, end: int, stored_next: int | None) -> tuple[int, int]:
    """The offsets [start, done) of the window [start, end) that ingestion already took (as rows or dead
    letters): those below `stored_next` (None: nothing ingested yet)."""
    start, end = max(0, start), max(0, end)
    end = max(start, end)
    return start, min(end, max(start, stored_next or 0))


def partition_replay(partition: int, start: int, end: int, stored_next: int | None,
                     unhandled: Collection[int], handled: Collection[int],
                     copies: Collection[int] | None = None) -> PartitionReplay:  # fmt: skip
    """Sort the offsets [start, end) of a partition: below `stored_next` (None: nothing ingested yet) each
    is handled, a producer copy still to drop (`copies`, when looked for), an unhandled dead letter or
    else a row; the rest waits for ordinary ingestion. `handled` wins over the other two."""
    start, done_to = ingested_range(start, end, stored_next)
    end = max(start, max(0, end))
    done = set(handled)
    already = sum(1 for o in done if start <= o < done_to)
    found = None if copies is None else tuple(sorted(o for o in set(copies) - done if start <= o < done_to))
    dead = tuple(sorted(o for o in set(unhandled) - done - set(found or ()) if start <= o < done_to))
    return PartitionReplay(partition, start, end, stored_next or 0, dead, already,
                           rows=(done_to - start) - len(dead) - already - len(found or ()),
                           not_ingested=end - done_to, copies=found)  # fmt: skip


def message_digest(key: bytes | None, payload: bytes) -> bytes:
    """A digest of (key, payload) that tells a None key from an empty one and the key's end from the
    payload's start."""
    head = b"\x00" if key is None else b"\x01" + len(key).to_bytes(8, "big") + key
    return hashlib.sha256(head + payload).digest()


class CopyFinder:
    """Producer copies, streaming: feed each partition's messages in offset order; `add` returns the
    offset of the earlier message of the same partition with the identical key AND payload when this one
    is its copy, else None. Keeps one digest per distinct message, not the payloads."""

    def __init__(self) -> None:
        self._first: dict[tuple[int, bytes], int] = {}

    def add(self, partition: int, offset: int, key: bytes | None, payload: bytes) -> int | None:
        first = self._first.setdefault((partition, message_digest(key, payload)), offset)
        return first if first != offset else None


def producer_copies(messages: Iterable[tuple[int, int, bytes | None, bytes]]) -> dict[tuple[int, int], int]:
    """`(partition, offset, key, payload)` -> each copy's position and the offset of its original (the
    first identical message of its partition); same key with another payload is no copy."""
    finder = CopyFinder()
    out: dict[tuple[int, int], int] = {}
    for partition, offset, key, payload in sorted(messages, key=lambda m: (m[0], m[1])):
        first = finder.add(partition, offset, key, payload)
        if first is not None:
            out[(partition, offset)] = first
    return out


def merge_ranges(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Offset ranges [start, end) of one partition, overlapping or touching ones merged."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(r for r in ranges if r[1] > r[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def window_start_label(start_ms: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=start_ms)).strftime("%Y-%m-%d")
