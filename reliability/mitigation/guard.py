"""The quarantine guard: every asset step of the code location first asks the incident store whether
it would materialize a quarantined asset partition, and fails naming the incident if so.

Why wrapping each asset's compute function: a run from a schedule, a sensor, an automation sensor, a
backfill or a click in the UI all end in the same place, the asset's op, so a check there holds for
every path (a hook runs after the op, too late; a blocking check runs after the write). The step fails
before it writes anything, and Dagster skips its downstream steps (their input never arrived). The run
tag `reliability/quarantine_override=INC-n` lets an engineer force it; that goes on the timeline.
If the incident store cannot be read the step runs (and logs why): a store outage must not stop
every pipeline.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any

import dagster as dg

from reliability.incidents.mapping import QUARANTINE_REFUSED_TAG as REFUSED_TAG  # the reader skips such runs
from reliability.mitigation.plan import blocking_quarantine, override_ids, refusal_message

log = logging.getLogger(__name__)
GUARDED = "__reliability_quarantine_guard__"
ACTOR_TAG = "reliability/actor"  # who forced an override; else dagster/user, else the run id


def step_partitions(context: dg.OpExecutionContext) -> list[str | None]:
    """The partition keys the step materializes: every key of a single-run range, or [None]."""
    if not context.has_partition_key and not context.has_partition_key_range:
        return [None]
    return list(context.partition_keys)


def enforce_quarantine(context: dg.OpExecutionContext, store_factory: Callable[[], Any] | None = None) -> None:
    """Raise dg.Failure naming the incident when this step would materialize a quarantined partition."""
    from reliability.mitigation.service import active_quarantines, record_override

    assets = sorted(k.to_user_string() for k in context.selected_asset_keys)
    if not assets:
        return
    partitions = step_partitions(context)
    try:
        store = (store_factory or _open_store)()
    except Exception as exc:  # noqa: BLE001 - see module docstring
        context.log.warning(f"quarantine not checked: incident store unavailable ({exc})")
        return
    try:
        blocked = blocking_quarantine(active_quarantines(store), assets, partitions)
        if not blocked:
            return
        forced = override_ids(context.run.tags)
        refused = [q for q in blocked if q.incident_id not in forced]
        if refused:
            # the run's failure is the breaker working, not a new detection (reliability.incidents.detection)
            context.instance.add_run_tags(context.run_id, {REFUSED_TAG: f"INC-{refused[0].incident_id}"})
            raise dg.Failure(
                description=refusal_message(refused, partitions),
                metadata={"incident_id": f"INC-{refused[0].incident_id}", "quarantined_asset": refused[0].asset},
                allow_retries=False,
            )
        tags = context.run.tags
        reconcile = "reliability-reconcile" if tags.get("reliability/reconcile") == "true" else None
        actor = tags.get(ACTOR_TAG) or tags.get("dagster/user") or reconcile or f"run {context.run_id}"
        record_override(store, sorted({q.incident_id for q in blocked}), run_id=context.run_id,
                        step=context.op_handle.name if context.op_handle else context.op.name, assets=assets,
                        partitions=[p for p in partitions if p], actor=actor)  # fmt: skip
        context.log.warning(f"quarantine overridden by {actor} for {', '.join(assets)} (on the incident timeline)")
    finally:
        store.close()


def _open_store() -> Any:
    from reliability.incidents.config import open_store

    return open_store()


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with the guard in front, keeping its signature (Dagster reads context, config and resources
    from it) and its kind (plain, generator, coroutine)."""

    def check() -> None:
        enforce_quarantine(dg.OpExecutionContext.get())

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Any:
            check()
            yield from fn(*args, **kwargs)

        wrapper: Callable[..., Any] = generator
    elif inspect.isasyncgenfunction(fn):

        @functools.wraps(fn)
        async def async_generator(*args: Any, **kwargs: Any) -> Any:
            check()
            async for item in fn(*args, **kwargs):
                yield item

        wrapper = async_generator
    elif inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def coroutine(*args: Any, **kwargs: Any) -> Any:
            check()
            return await fn(*args, **kwargs)

        wrapper = coroutine
    else:

        @functools.wraps(fn)
        def plain(*args: Any, **kwargs: Any) -> Any:
            check()
            return fn(*args, **kwargs)

        wrapper = plain
    setattr(wrapper, GUARDED, True)
    return wrapper


def guard_assets_def(assets_def: dg.AssetsDefinition) -> dg.AssetsDefinition:
    """The same asset(s) with the quarantine guard in front of the op (materializing ops only)."""
    from dagster._core.definitions.decorators.op_decorator import DecoratedOpFunction

    if not assets_def.is_executable or not assets_def.is_materializable:
        return assets_def
    op_def = assets_def.node_def
    compute = getattr(op_def, "compute_fn", None)
    if not isinstance(op_def, dg.OpDefinition) or not isinstance(compute, DecoratedOpFunction):
        return assets_def  # graph-backed assets: not used by the platform
    if getattr(compute.decorated_fn, GUARDED, False):
        return assets_def
    guarded_op = dg.OpDefinition.dagster_internal_init(
        name=op_def.name,
        ins={d.name: dg.In.from_definition(d) for d in op_def.input_defs},
        outs={d.name: dg.Out.from_definition(d) for d in op_def.output_defs},
        compute_fn=DecoratedOpFunction(_guarded(compute.decorated_fn)),
        config_schema=op_def.config_schema,
        description=op_def.description,
        tags=op_def.tags,
        required_resource_keys=op_def.required_resource_keys,
        code_version=op_def._version,  # noqa: SLF001 - the public `version` is deprecated, as in with_replaced_properties
        retry_policy=op_def.retry_policy,
        version=None,
        pool=op_def.pool,
    )
    attributes = assets_def.get_attributes_dict()
    attributes["node_def"] = guarded_op
    return dg.AssetsDefinition.dagster_internal_init(**attributes)


def with_quarantine_guard(assets: list[Any]) -> list[Any]:
    """Every materializing AssetsDefinition guarded; anything else (checks, specs) unchanged."""
    return [guard_assets_def(a) if isinstance(a, dg.AssetsDefinition) else a for a in assets]
