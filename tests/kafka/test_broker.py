"""Broker management: which cluster is used, KAFKA_HOME distributions, a second broker started and stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.kafka import broker


def test_external_cluster_wins_and_nothing_is_started(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092,kafka-b:9092")
    monkeypatch.setenv("RELIABILITY_KAFKA_STATE_DIR", str(tmp_path / "state"))
    assert broker.bootstrap_servers() == "kafka-a:9092,kafka-b:9092"
    assert broker.down() is False
    assert not (tmp_path / "state").exists()


def test_no_cluster_says_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("RELIABILITY_KAFKA_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(broker.KafkaUnavailable, match="reliability kafka up"):
        broker.bootstrap_servers()


def test_kafka_home_without_jars_is_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    with pytest.raises(broker.KafkaUnavailable, match="KAFKA_HOME"):
        broker.resolve_jars()


def test_server_properties_single_node_kraft(tmp_path):
    props = dict(line.split("=", 1) for line in broker.server_properties(tmp_path, 19500, 19501).splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19500,CONTROLLER://127.0.0.1:19501"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19501"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["offsets.topic.replication.factor"] == props["transaction.state.log.replication.factor"] == "1"


def test_stale_pid_file_is_not_trusted(monkeypatch, tmp_path):
    """A recorded pid that now belongs to another process is never reported (or stopped) as our broker."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("RELIABILITY_KAFKA_STATE_DIR", str(tmp_path))
    (tmp_path / "broker.json").write_text(
        f'{{"pid": {os.getpid()}, "bootstrap": "127.0.0.1:1", "broker_port": 1, "controller_port": 2, '
        '"version": "x", "started_at": 0}'
    )
    assert broker.running_state() is None
    assert broker.down() is False


@pytest.mark.kafka
@pytest.mark.skipif(bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")), reason="uses a local broker's jars")
def test_kafka_home_distribution_runs_a_second_broker(kafka_broker, monkeypatch, tmp_path):
    """An unpacked distribution (libs/) is used as is; up/down manage exactly that second process."""
    libs = broker.resolve_jars()  # the session's jars, laid out like a distribution's libs/
    home = tmp_path / "kafka_home"
    home.mkdir()
    (home / "libs").symlink_to(libs)
    monkeypatch.setenv("KAFKA_HOME", str(home))
    monkeypatch.setenv("RELIABILITY_KAFKA_STATE_DIR", str(tmp_path / "state"))
    assert broker.resolve_jars() == home / "libs"
    bootstrap, started = broker.up(timeout_s=120)
    try:
        assert started and bootstrap != kafka_broker  # the default port is taken: another one is picked
        state = broker.running_state()
        assert state is not None and Path(f"/proc/{state.pid}").exists()
        assert broker.up()[1] is False  # idempotent
    finally:
        assert broker.down() is True
    assert broker.running_state() is None
    monkeypatch.delenv("RELIABILITY_KAFKA_STATE_DIR")
    monkeypatch.delenv("KAFKA_HOME")
    assert broker.status()["running"] is True  # the session's broker was not touched


def test_storage_format_takes_a_cluster_id_that_starts_with_a_dash(tmp_path) -> None:
    """One id in 64 starts with "-"; the storage tool must not read it as an option."""
    from reliability.kafka import broker

    cluster_id = next(c for c in iter(broker.new_cluster_id, None) if c.startswith("-"))
    (tmp_path / "server.properties").write_text(broker.server_properties(tmp_path, 29092, 29093))
    broker._format_storage(tmp_path, broker.resolve_jars(), cluster_id=cluster_id)
    meta = (tmp_path / "data" / "meta.properties").read_text()
    assert f"cluster.id={cluster_id}" in meta
