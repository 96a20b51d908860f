"""A real, local Apache Kafka 4.x broker: resolve its jars with Maven, format KRaft storage, start, stop.

Why not a fake: lag, backpressure and poison messages only behave like production on a real broker.
Resolution order for "which cluster": `KAFKA_BOOTSTRAP_SERVERS` (use it, start nothing) -> the broker this
module started (state file) -> none. Jars come from `KAFKA_HOME/libs` when set, otherwise from Maven
Central into `~/.cache/reliability/kafka/<version>/libs` (resolved once, then reused).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from reliability.errors import UserFacingError

KAFKA_VERSION = os.environ.get("RELIABILITY_KAFKA_VERSION", "4.1.1")
SLF4J_VERSION = "2.0.17"
DEFAULT_BROKER_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
CONSUMER_GROUP_COMMAND_CLASS = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"


class KafkaUnavailable(UserFacingError):
    """No cluster is configured or running; the message says how to get one."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "reliability" / "kafka" / version


def state_dir() -> Path:
    """Where the local broker keeps config, data, log and pid file: `<repo>/.data/kafka` (git-ignored).

    Not derived from the warehouse path, so tests with a temporary warehouse still find the broker.
    """
    override = os.environ.get("RELIABILITY_KAFKA_STATE_DIR")
    if override:
        return Path(override).resolve()
    from reliability.settings import REPO_ROOT

    return REPO_ROOT / ".data" / "kafka"


_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>reliability.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId>
      <version>{version}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId>
      <version>{slf4j}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""


def _has_jars(libs: Path) -> bool:
    return libs.is_dir() and any(libs.glob("kafka_2.13-*.jar"))


def resolve_jars(version: str = KAFKA_VERSION, quiet: bool = True) -> Path:
    """Directory holding the broker's jars; downloads them with Maven the first time (cached)."""
    kafka_home = os.environ.get("KAFKA_HOME")
    if kafka_home:
        libs = Path(kafka_home) / "libs"
        if not _has_jars(libs):
            raise KafkaUnavailable(f"KAFKA_HOME={kafka_home}: no libs/kafka_2.13-*.jar there")
        return libs
    root = cache_dir(version)
    libs = root / "libs"
    if _has_jars(libs) and (root / "RESOLVED").exists():
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable(
            "Kafka needs Maven (mvn) to fetch its jars, or KAFKA_HOME pointing at an unpacked Apache Kafka "
            "distribution, or KAFKA_BOOTSTRAP_SERVERS naming a running cluster"
        )
    root.mkdir(parents=True, exist_ok=True)
    tmp_libs = root / "libs.partial"
    shutil.rmtree(tmp_libs, ignore_errors=True)
    (root / "pom.xml").write_text(_POM.format(version=version, slf4j=SLF4J_VERSION))
    cmd = [
        mvn,
        "-B",
        "-f",
        str(root / "pom.xml"),
        "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
        f"-DoutputDirectory={tmp_libs}",
        "-DincludeScope=runtime",
    ]
    if quiet:
        cmd.insert(1, "-q")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not _has_jars(tmp_libs):
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise KafkaUnavailable(f"Maven could not resolve org.apache.kafka:kafka_2.13:{version}:\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp_libs.rename(libs)
    (root / "RESOLVED").write_text(version)
    return libs


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise KafkaUnavailable("Kafka needs Java 17+ (java not found on PATH, JAVA_HOME unset)")
    return java


def java_command(main_class: str, *args: str, libs: Path | None = None, heap: str = "512m") -> list[str]:
    """A `java` command line running one Kafka main class from the resolved jars."""
    libs = libs or resolve_jars()
    return [
        java_binary(),
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-Djava.awt.headless=true",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-cp",
        f"{libs}/*",
        main_class,
        *args,
    ]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pick_port(preferred: int, taken: set[int]) -> int:
    if preferred not in taken and _port_free(preferred):
        return preferred
    while True:
        port = _free_port()
        if port not in taken:
            return port


def server_properties(state: Path, broker_port: int, controller_port: int) -> str:
    """Single-node KRaft (broker + controller) settings sized for one laptop or CI box."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{broker_port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(state / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


@dataclass(frozen=True)
class BrokerState:
    pid: int
    bootstrap: str
    broker_port: int
    controller_port: int
    version: str
    started_at: float


def _state_file(state: Path) -> Path:
    return state / "broker.json"


def read_state(state: Path | None = None) -> BrokerState | None:
    path = _state_file(state or state_dir())
    try:
        return BrokerState(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def _is_our_process(pid: int, state: Path) -> bool:
    """True if `pid` is alive and is the Kafka we started with this state dir's config (not a reused pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    args = [a.decode(errors="replace") for a in cmdline]
    return MAIN_CLASS in args and str(state / "server.properties") in args


def running_state(state: Path | None = None) -> BrokerState | None:
    """State of the broker this module started, if that very process is still alive."""
    state = state or state_dir()
    current = read_state(state)
    if current is None or not _is_our_process(current.pid, state):
        return None
    return current


def bootstrap_servers() -> str:
    """The cluster to talk to: `KAFKA_BOOTSTRAP_SERVERS`, else the local broker; raises if neither."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        return env
    current = running_state()
    if current is None:
        raise KafkaUnavailable("no Kafka cluster: run `reliability kafka up` or set KAFKA_BOOTSTRAP_SERVERS")
    return current.bootstrap


def wait_until_ready(bootstrap: str, timeout_s: float = 60.0, pid: int | None = None) -> None:
    """Block until the cluster answers a metadata request (or raise with the reason)."""
    from reliability.kafka import clients

    admin = clients.admin(bootstrap, **{"socket.connection.setup.timeout.ms": 2000})
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if pid is not None and not pid_alive(pid):
            raise KafkaUnavailable(f"the Kafka process {pid} exited during start-up")
        try:
            md = admin.list_topics(timeout=2)
            if md.brokers:
                return
        except Exception as exc:  # KafkaException while the broker boots
            last_error = exc
        time.sleep(0.3)
    raise KafkaUnavailable(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s ({last_error})")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 (may start with "-")."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _format_storage(state: Path, libs: Path, cluster_id: str | None = None) -> None:
    if (state / "data" / "meta.properties").exists():
        return
    cluster_id = cluster_id or new_cluster_id()
    cmd = java_command(
        STORAGE_TOOL_CLASS,
        "format",
        # `=` form: a base64 id may start with "-", which the tool would read as an option
        f"--cluster-id={cluster_id}",
        "-c",
        str(state / "server.properties"),
        "--ignore-formatted",
        libs=libs,
        heap="256m",
    )
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise KafkaUnavailable(f"formatting KRaft storage failed:\n{(proc.stdout + proc.stderr)[-2000:]}")


@contextlib.contextmanager
def _locked(state: Path):
    """One `up`/`down` at a time per state dir (two test sessions or terminals may race)."""
    import fcntl

    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def up(timeout_s: float = 90.0) -> tuple[str, bool]:
    """Make a broker available; returns (bootstrap servers, whether this call started a process).

    Idempotent: an external cluster or an already running local broker is reused as is.
    """
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        wait_until_ready(env, timeout_s=timeout_s)
        return env, False
    state = state_dir()
    with _locked(state):
        return _up_locked(state, timeout_s)


def _up_locked(state: Path, timeout_s: float) -> tuple[str, bool]:
    current = running_state(state)
    if current is not None:
        wait_until_ready(current.bootstrap, timeout_s=timeout_s, pid=current.pid)
        return current.bootstrap, False
    libs = resolve_jars()
    state.mkdir(parents=True, exist_ok=True)
    previous = read_state(state)
    broker_port = _pick_port(previous.broker_port if previous else DEFAULT_BROKER_PORT, set())
    controller_port = _pick_port(previous.controller_port if previous else DEFAULT_CONTROLLER_PORT, {broker_port})
    (state / "server.properties").write_text(server_properties(state, broker_port, controller_port))
    _format_storage(state, libs)
    log = open(state / "broker.log", "ab")  # noqa: SIM115 - handed to the child process
    cmd = java_command(MAIN_CLASS, str(state / "server.properties"), libs=libs, heap="1g")
    proc = subprocess.Popen(
        cmd,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        cwd=state,
    )
    log.close()
    bootstrap = f"127.0.0.1:{broker_port}"
    info = BrokerState(proc.pid, bootstrap, broker_port, controller_port, KAFKA_VERSION, time.time())
    _state_file(state).write_text(json.dumps(info.__dict__))
    (state / "kafka.pid").write_text(f"{proc.pid}\n")
    try:
        wait_until_ready(bootstrap, timeout_s=timeout_s, pid=proc.pid)
    except KafkaUnavailable as exc:
        _stop_pid(proc.pid)
        tail = (state / "broker.log").read_text(errors="replace")[-2000:]
        raise KafkaUnavailable(f"{exc}\nbroker log ({state / 'broker.log'}):\n{tail}") from exc
    return bootstrap, True


def _stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):  # reap it if it is our child
        os.waitpid(pid, os.WNOHANG)


def down() -> bool:
    """Stop exactly the broker process `up` started (by its recorded pid); False if none was running."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return False  # an external cluster is not ours to stop
    state = state_dir()
    if running_state(state) is None:
        return False
    with _locked(state):
        current = running_state(state)
        if current is None:
            return False
        _stop_pid(current.pid)
        (state / "kafka.pid").unlink(missing_ok=True)
        return True


def status() -> dict[str, object]:
    """What `kafka status` shows: which cluster, who runs it, whether it answers."""
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if env:
        info: dict[str, object] = {"bootstrap": env, "managed": False}
    else:
        current = running_state()
        if current is None:
            return {"running": False, "managed": True, "state_dir": str(state_dir())}
        info = {
            "bootstrap": current.bootstrap,
            "managed": True,
            "pid": current.pid,
            "version": current.version,
            "state_dir": str(state_dir()),
        }
    try:
        wait_until_ready(str(info["bootstrap"]), timeout_s=5)
        info["running"] = True
    except KafkaUnavailable as exc:
        info["running"] = False
        info["error"] = str(exc)
    return info
