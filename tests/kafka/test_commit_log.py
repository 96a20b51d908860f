"""Decoding the commit log (`__consumer_offsets`) records: pure, from bytes as the broker writes them."""

from __future__ import annotations

import struct

import pytest

from reliability.kafka.commit_log import decode_commit, group_log_partition, java_string_hash
from reliability.kafka.lag import CommitRecord

# captured from the project's Kafka 4 broker: group probe.g committed offset 3 of probe.t[0]
KEY_V1 = b"\x00\x01\x00\x07probe.g\x00\x07probe.t\x00\x00\x00\x00"
VALUE_V4 = b"\x00\x04\x00\x00\x00\x00\x00\x00\x00\x03\xff\xff\xff\xff\x01\x00\x00\x01\xa2+Q\xed\x12\x00"


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def test_java_string_hash_matches_java():
    assert java_string_hash("hello") == 99162322  # "hello".hashCode()
    assert java_string_hash("") == 0
    assert java_string_hash("polygenelubricants") == -2147483648  # Integer.MIN_VALUE
    assert java_string_hash("é") == 233  # UTF-16 code unit, not UTF-8 bytes


def test_group_log_partition_is_kafkas():
    # where the project's broker put these groups' commits (a negative hash: abs, not a bit mask)
    assert group_log_partition("probe.g", 10) == 9
    assert group_log_partition("g.dbg.96b6be", 10) == 8
    assert group_log_partition("g.test.test-consumer-that-left-while-lag-grows-is-stop-for-the-cli-.2c98cd2f", 10) == 5
    assert group_log_partition("polygenelubricants", 50) == 0  # Utils.abs(Integer.MIN_VALUE) is 0
    assert all(0 <= group_log_partition(f"g{i}", 50) < 50 for i in range(200))


def test_decodes_a_value_v4_record_from_the_broker():
    rec = decode_commit(KEY_V1, VALUE_V4)
    assert rec == CommitRecord("probe.g", "probe.t", 0, 3, 1796023119.122)


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_decodes_older_value_versions(version: int):
    value = struct.pack(">hq", version, 42)
    if version >= 3:
        value += struct.pack(">i", 7)  # leader epoch
    value += _string("meta") + struct.pack(">q", 1_500_000_000_000)
    if version == 1:
        value += struct.pack(">q", 1_600_000_000_000)  # expire timestamp
    rec = decode_commit(struct.pack(">h", 0) + _string("g") + _string("t") + struct.pack(">i", 3), value)
    assert rec == CommitRecord("g", "t", 3, 42, 1_500_000_000.0)


def test_tombstone_is_a_deletion_and_other_records_are_skipped():
    deleted = decode_commit(KEY_V1, None)
    assert deleted is not None and deleted.offset is None and deleted.group == "probe.g"
    assert decode_commit(struct.pack(">h", 2) + _string("probe.g"), b"\x00\x03") is None  # group metadata
    assert decode_commit(None, VALUE_V4) is None


def test_an_unknown_value_version_is_skipped_not_fatal():
    assert decode_commit(KEY_V1, struct.pack(">hq", 9, 1)) is None
