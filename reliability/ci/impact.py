"""The impact of a change: blast radius of every modified model, and contract-breaking schema changes.

Pure: works on a `LineageGraph` (reliability.incidents.triage) and plain column schemas, so it is
unit-tested without Dagster, dbt or DuckDB.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reliability.incidents.triage import BlastRadius, ImpactedAsset, LineageGraph, blast_radius, md_escape

TableSchema = Mapping[str, str]  # column name -> data type, as the warehouse reports them


@dataclass(frozen=True)
class ModelImpact:
    """One modified model and everything downstream of it."""

    model: str
    radius: BlastRadius

    @property
    def downstream(self) -> tuple[ImpactedAsset, ...]:
        """Downstream assets, tier 1 first (unknown tier last), then nearest first."""
        return tuple(sorted(self.radius.downstream, key=lambda a: (a.tier or 99, a.depth, a.key)))

    @property
    def top_tier(self) -> int | None:
        return self.radius.top_tier

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "top_tier": f"tier{self.top_tier}" if self.top_tier else None,
            "owners": list(self.radius.owners),
            "exposures": list(self.radius.exposures),
            "downstream": [a.to_dict() for a in self.downstream],
        }


def change_impact(graph: LineageGraph, modified: Sequence[str]) -> list[ModelImpact]:
    """The blast radius of each modified model, the ones reaching tier 1 first."""
    impacts = [ModelImpact(model, blast_radius(graph, [model])) for model in dict.fromkeys(modified)]
    return sorted(impacts, key=lambda i: (i.top_tier or 99, i.model))


def _tier(tier: int | None) -> str:
    return f"tier{tier}" if tier else "-"


def impact_lines(impacts: Sequence[ModelImpact]) -> list[str]:
    """Plain text for the terminal."""
    if not impacts:
        return ["No modified model."]
    lines = []
    for impact in impacts:
        radius = impact.radius
        lines.append(
            f"{impact.model} (top tier {_tier(impact.top_tier)}): {len(radius.downstream)} downstream, "
            f"owners {', '.join(radius.owners) or '-'}, exposures {', '.join(radius.exposures) or '-'}"
        )
        lines += [
            f"  {_tier(a.tier):>6}  {a.key}  ({a.kind}, depth {a.depth}, {', '.join(a.owners) or 'no owner'})"
            for a in impact.downstream
        ]
    return lines


def impact_markdown(impacts: Sequence[ModelImpact], breaks: Sequence[ContractBreak] = ()) -> str:
    """The blast radius as a pull-request comment: tier-1 impact first, one table per modified model."""
    lines = ["## Impact of this change", ""]
    if breaks:
        lines += ["**Contract-breaking changes**", ""]
        lines += [f"- ❌ {md_escape(b.message)}" for b in breaks]
        lines.append("")
    if not impacts:
        lines.append("No modified model.")
    for impact in impacts:
        radius = impact.radius
        lines += [
            f"### `{md_escape(impact.model)}` — top tier {_tier(impact.top_tier)}",
            "",
            f"{len(radius.downstream)} downstream asset(s). Owners: {', '.join(radius.owners) or '-'}. "
            f"Exposures: {', '.join(f'`{md_escape(e)}`' for e in radius.exposures) or '-'}.",
            "",
        ]
        if impact.downstream:
            lines += ["| tier | asset | kind | depth | owners |", "|---|---|---|---|---|"]
            lines += [
                f"| {_tier(a.tier)} | `{md_escape(a.key)}` | {a.kind} | {a.depth} | "
                f"{md_escape(', '.join(a.owners)) or '-'} |"
                for a in impact.downstream
            ]
            lines.append("")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class ContractBreak:
    """A column a contract requires that the change dropped or retyped."""

    contract: str  # contract file
    table: str
    column: str
    before: str | None  # type before the change
    after: str | None  # type after; None when dropped
    checks: tuple[str, ...] = ()  # the contract's checks that read the column

    @property
    def message(self) -> str:
        change = "dropped" if self.after is None else f"retyped {self.before} -> {self.after}"
        reads = f" (read by {', '.join(self.checks)})" if self.checks else ""
        return f"contract {self.contract} requires {self.table}.{self.column}: {change}{reads}"


def _base_type(data_type: str) -> str:
    return data_type.split("(", 1)[0].strip().lower()


def contract_breaks(
    contract: str,
    table: str,
    required: Sequence[str],
    before: TableSchema,
    after: TableSchema,
    readers: Mapping[str, Sequence[str]] | None = None,
) -> list[ContractBreak]:
    """Columns the contract requires that existed before the change and are gone or of another type after.

    A column already missing before is not the change's doing (the contract fails either way).
    DuckDB matches identifiers case-insensitively, so names are compared case-folded."""
    before_folded = {name.casefold(): t for name, t in before.items()}
    after_folded = {name.casefold(): t for name, t in after.items()}
    breaks = []
    for column in required:
        old = before_folded.get(column.casefold())
        if old is None:
            continue
        new = after_folded.get(column.casefold())
        if new is None or _base_type(new) != _base_type(old):
            checks = tuple((readers or {}).get(column, ()))
            breaks.append(ContractBreak(contract, table, column, old, new, checks))
    return breaks
