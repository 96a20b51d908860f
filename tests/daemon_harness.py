"""A real `dagster-daemon` on a temporary instance, for the tests of behaviour only the daemon has
(automation, freshness, backfills): start it on a workspace, wait for what it should do, stop it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def quiet_platform(platform: Any, sensors: Iterable[Any] = (), resources: Mapping[str, Any] | None = None) -> Any:
    """The platform's assets, checks, jobs, resources (`resources` replace some) and executor without
    automation conditions and with only `sensors`: a daemon on it runs nothing but what the test or
    benchmark submits."""
    import warnings

    import dagster as dg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.Definitions(
            assets=platform.assets,
            asset_checks=platform.asset_checks,
            jobs=platform.jobs,
            sensors=list(sensors),
            resources={**platform.resources, **(resources or {})},
            executor=platform.executor,
        ).map_asset_specs(func=lambda spec: spec.replace_attributes(automation_condition=None))


def write_workspace(path: Path, module: str) -> Path:
    """A workspace file loading `module.defs` from the repository."""
    path.write_text(
        f"load_from:\n  - python_module:\n      module_name: {module}\n      attribute: defs\n"
        f"      working_directory: {REPO}\n"
    )
    return path


@contextmanager
def running_daemon(workspace: Path, env: Mapping[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """The daemon as its own process group, its output in `log`; stopped (then killed) on exit."""
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, start_new_session=True,
        )  # fmt: skip
    try:
        yield daemon
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)


def wait_for(what: str, predicate: Callable[[], T], log: Path, timeout_s: float = 600) -> T:
    """Poll until `predicate()` is truthy; on time-out (or a code location that does not load) fail with
    the tail of the daemon's log."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        if "Error loading repository location" in log.read_text(errors="replace"):
            break  # the code location does not load: waiting longer cannot help
        time.sleep(3)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}; daemon log tail:\n{tail}")


@contextmanager
def in_process_workspace(instance: Any, module_name: str) -> Iterator[Any]:
    """A workspace context on the code location `module_name` (its `defs`), loaded in this process: what
    the daemon's own iterations (e.g. `execute_backfill_iteration`) take, without a daemon process."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    origin = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name=module_name, attribute="defs", working_directory=str(REPO)),
        location_name="platform",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(origin)) as context:
        yield context


def submit_backfill(instance: Any, asset_graph: Any, keys: Iterable[Any], days: Iterable[date], title: str) -> str:
    """One asset backfill of `keys` over `days`, as the UI's "Materialize" of a selection submits it
    (an unpartitioned asset among them is built once); returns its id. The daemon runs it."""
    from dagster._core.execution.backfill import PartitionBackfill
    from dagster._core.utils import make_new_backfill_id

    backfill_id = make_new_backfill_id()
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id=backfill_id, asset_graph=asset_graph, partition_names=[d.isoformat() for d in days],
            asset_selection=list(keys), backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance,
            all_partitions=False, title=title, description=None, run_config=None,
        )
    )  # fmt: skip
    return backfill_id


def wait_for_backfill(instance: Any, backfill_id: str, timeout_s: float = 1800, poll_s: float = 0.5) -> str:
    """Poll until the backfill's status is final; returns it (e.g. COMPLETED_SUCCESS)."""
    from dagster._core.execution.backfill import BULK_ACTION_TERMINAL_STATUSES

    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        backfill = instance.get_backfill(backfill_id)
        if backfill.status in BULK_ACTION_TERMINAL_STATUSES:
            return backfill.status.value
        time.sleep(poll_s)
    raise AssertionError(f"backfill {backfill_id} not finished after {timeout_s} s")
