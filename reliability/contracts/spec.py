"""Contract files -> check specs, without Soda and without touching the warehouse.

Definitions load must stay fast and must survive a broken contract, so contracts are read here with
PyYAML and validated against the part of the Soda v4 contract language the platform relies on
(dataset, columns, check types, the columns a check names). Soda still does the full validation
when the contract runs; anything it rejects then becomes a failed check naming the file.

Every Soda check becomes one Dagster check with a stable name:
`soda_<type>` for dataset checks, `soda_<column>_<type>` for column checks, plus `_<qualifier>` when
the contract gives one. A contract that cannot be used becomes a single `soda_contract_valid` check.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONTRACT_SUFFIXES = (".yml", ".yaml")
CONTRACT_VALID_CHECK = "soda_contract_valid"

# Soda v4 check types and where they may appear (soda_core/contracts/impl/check_types).
DATASET_CHECK_TYPES = frozenset({"schema", "row_count", "freshness", "duplicate", "failed_rows", "metric"})
COLUMN_CHECK_TYPES = frozenset({"missing", "invalid", "duplicate", "aggregate", "metric", "failed_rows"})
# Check kinds whose failing rows the platform can sample with its own query.
SAMPLED_KINDS = frozenset({"missing", "invalid", "duplicate"})

# Keys of a column or check that tell which values are missing / invalid (Soda's MissingAndValidity).
RULE_KEYS = (
    "missing_values",
    "missing_format",
    "invalid_values",
    "invalid_format",
    "valid_values",
    "valid_format",
    "valid_min",
    "valid_max",
    "valid_length",
    "valid_min_length",
    "valid_max_length",
    "valid_reference_data",
)

# Per-check overrides of the Dagster policy, set under a check's `attributes` or the contract's
# `check_attributes` (Soda passes attributes through untouched).
BLOCKING_ATTRIBUTE = "dagster_blocking"
SEVERITY_ATTRIBUTE = "dagster_severity"
# A check that must see every day even in a partitioned run (e.g. ids unique across days).
WHOLE_TABLE_ATTRIBUTE = "dagster_whole_table"

# The Soda variables a contract's dataset `filter` uses to see only the partition a run builds:
# `[start, end)` as 'YYYY-MM-DD' (or 'YYYY-MM-DD HH:MM:SS'), set by the platform from the run.
WINDOW_START_VARIABLE = "PARTITION_WINDOW_START"
WINDOW_END_VARIABLE = "PARTITION_WINDOW_END"
WINDOW_VARIABLES = (WINDOW_START_VARIABLE, WINDOW_END_VARIABLE)
_VARIABLE_REFERENCE = re.compile(r"\$\{ *var\.([a-zA-Z_][a-zA-Z_0-9]*) *\}")

_NAME_OK = re.compile(r"^[A-Za-z0-9_]+$")
# libyaml's safe loader when present: contracts are parsed at every load and every check run
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class CheckSpec:
    """One Soda check of a contract, as the Dagster check that reports it."""

    name: str  # Dagster check name, unique per asset
    kind: str  # Soda check type
    soda_path: str  # Soda's relative path, e.g. columns.amount.checks.invalid
    column: str | None = None
    qualifier: str | None = None
    columns: tuple[str, ...] = ()  # columns the check reads (for preflight and samples)
    rules: Mapping[str, Any] = field(default_factory=dict)  # missing/validity config incl. column defaults
    check_filter: str | None = None
    threshold: str = ""  # the threshold as written, for the UI before the first run
    title: str = ""
    blocking: bool = True
    severity: str = "error"  # severity of a failure: "error" or "warn"
    whole_table: bool = False  # ignores the partition window (attribute dagster_whole_table)


@dataclass(frozen=True)
class ContractSpec:
    """A usable contract: the dataset it guards and one spec per check."""

    path: Path
    datasource: str
    prefixes: tuple[str, ...]  # schema (and database) between datasource and table
    table: str
    columns: tuple[str, ...]
    data_types: Mapping[str, str | None]
    checks: tuple[CheckSpec, ...]
    dataset_filter: str | None = None
    variables: tuple[str, ...] = ()  # names declared under `variables:`
    variable_defaults: Mapping[str, str] = field(default_factory=dict)

    @property
    def asset_name(self) -> str:
        return self.table

    @property
    def partition_windowed(self) -> bool:
        """Whether the dataset filter restricts checks to the partition window a run passes."""
        used = set(_VARIABLE_REFERENCE.findall(self.dataset_filter or ""))
        return set(WINDOW_VARIABLES) <= used

    def resolved(self, sql_text: str | None, variables: Mapping[str, str] | None = None) -> str | None:
        """A contract filter as Soda runs it: each `${var.X}` replaced by the given value or its default."""
        return substitute_variables(sql_text, {**self.variable_defaults, **(variables or {})}, self.path)

    @property
    def schema(self) -> str | None:
        return self.prefixes[-1] if self.prefixes else None


@dataclass(frozen=True)
class BrokenContract:
    """A contract the platform cannot use; it surfaces as one failing check on `asset_name`."""

    path: Path
    asset_name: str
    problem: str
    check_name: str = CONTRACT_VALID_CHECK

    @property
    def message(self) -> str:
        return f"{self.path}: {self.problem}"


class ContractProblem(ValueError):
    """A reason why a contract cannot be used (message is shown to users)."""


def substitute_variables(sql_text: str | None, values: Mapping[str, str], path: Path | str) -> str | None:
    """`${var.X}` in a contract's SQL replaced by `values[X]`, as Soda does before it runs the SQL."""
    if sql_text is None:
        return None

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ContractProblem(f"{path}: SQL uses variable '{name}' without a value or default")
        return values[name]

    return _VARIABLE_REFERENCE.sub(value, sql_text)


def safe_name_part(text: str) -> str:
    """A Dagster-name-safe rendering of `text`; a short hash keeps distinct hostile names distinct."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")
    if cleaned == text and cleaned:
        return cleaned
    digest = hashlib.sha1(text.encode()).hexdigest()[:6]
    return f"{cleaned}_{digest}" if cleaned else digest


def check_name(kind: str, column: str | None, qualifier: str | None) -> str:
    parts = ["soda"]
    if column is not None:
        parts.append(safe_name_part(column))
    parts.append(kind)
    if qualifier is not None:
        parts.append(safe_name_part(qualifier))
    name = "_".join(parts)
    assert _NAME_OK.match(name), name
    return name


def soda_path(kind: str, column: str | None, qualifier: str | None) -> str:
    """Soda's `relative_path` of a check (CheckImpl.relative_path), used to select and match checks."""
    parts = ["columns", column] if column is not None else []
    parts += ["checks", kind]
    if qualifier is not None:
        parts.append(qualifier)
    return ".".join(parts)


def _threshold_text(body: Mapping[str, Any]) -> str:
    threshold = body.get("threshold")
    if threshold is None:
        return ""
    if not isinstance(threshold, Mapping):
        raise ContractProblem(f"'threshold' must be a mapping, got {threshold!r}")
    return ", ".join(f"{k}: {v}" for k, v in threshold.items())


def _policy(attributes: Mapping[str, Any], where: str, threshold: Mapping[str, Any] | None) -> tuple[bool, str]:
    """Blocking and failure severity of a check: blocking ERROR unless the contract says otherwise."""
    severity = attributes.get(SEVERITY_ATTRIBUTE, "error")
    if severity not in ("error", "warn"):
        raise ContractProblem(f"{where}: attribute {SEVERITY_ATTRIBUTE} must be 'error' or 'warn', got {severity!r}")
    if isinstance(threshold, Mapping) and str(threshold.get("level", "fail")).lower() == "warn":
        severity = "warn"
    blocking = attributes.get(BLOCKING_ATTRIBUTE, severity == "error")
    if not isinstance(blocking, bool):
        raise ContractProblem(f"{where}: attribute {BLOCKING_ATTRIBUTE} must be true or false, got {blocking!r}")
    return blocking and severity == "error", severity


def _whole_table(attributes: Mapping[str, Any], where: str) -> bool:
    whole = attributes.get(WHOLE_TABLE_ATTRIBUTE, False)
    if not isinstance(whole, bool):
        raise ContractProblem(f"{where}: attribute {WHOLE_TABLE_ATTRIBUTE} must be true or false, got {whole!r}")
    return whole


def _check_items(container: Mapping[str, Any], where: str) -> list[tuple[str, dict[str, Any]]]:
    """The (type, body) pairs of a `checks:` list, with Soda's shape rules."""
    raw = container.get("checks")
    if raw is None:
        return []
    if not isinstance(raw, list) or not raw:
        raise ContractProblem(f"{where}: 'checks' must be a non-empty list")
    items: list[tuple[str, dict[str, Any]]] = []
    for index, item in enumerate(raw):
        if isinstance(item, str):
            raise ContractProblem(f"{where}: check {index + 1} '{item}' needs a colon: '- {item}:'")
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ContractProblem(f"{where}: check {index + 1} must be a mapping with exactly one key, its type")
        ((kind, body),) = item.items()
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise ContractProblem(f"{where}: check '{kind}' must have a mapping body, got {body!r}")
        items.append((str(kind), dict(body)))
    return items


def _rules(column_body: Mapping[str, Any], check_body: Mapping[str, Any]) -> dict[str, Any]:
    """Missing/validity config of a column check; the check's own keys win over the column's."""
    rules = {k: column_body[k] for k in RULE_KEYS if column_body.get(k) is not None}
    rules.update({k: check_body[k] for k in RULE_KEYS if check_body.get(k) is not None})
    for key in ("missing_values", "invalid_values", "valid_values"):
        if key in rules and not isinstance(rules[key], list):
            raise ContractProblem(f"'{key}' must be a list, got {rules[key]!r}")
    for key in ("missing_format", "invalid_format", "valid_format"):
        if key in rules and not (isinstance(rules[key], Mapping) and isinstance(rules[key].get("regex"), str)):
            raise ContractProblem(f"'{key}' must be a mapping with a 'regex' string")
    for key in ("valid_min", "valid_max", "valid_length", "valid_min_length", "valid_max_length"):
        if key in rules and (isinstance(rules[key], bool) or not isinstance(rules[key], int | float)):
            raise ContractProblem(f"'{key}' must be a number, got {rules[key]!r}")
    if "valid_reference_data" in rules:
        ref = rules["valid_reference_data"]
        if not (isinstance(ref, Mapping) and isinstance(ref.get("column"), str)):
            raise ContractProblem("'valid_reference_data' needs 'dataset' and 'column'")
        _, prefixes, table = parse_dataset(ref.get("dataset"))
        column = _identifier(ref["column"], "reference column")
        rules["valid_reference_data"] = {"prefixes": prefixes, "table": table, "column": column}
    return rules


def _title(kind: str, column: str | None, body: Mapping[str, Any]) -> str:
    if isinstance(body.get("name"), str):
        return body["name"]
    return f"Soda {kind} check" + (f" on column {column}" if column is not None else "")


def _identifier(name: str, what: str) -> str:
    """Refuse names Soda Core 4.28 would put into SQL unescaped (it quotes, but does not double '"')."""
    if '"' in name or "\x00" in name:
        raise ContractProblem(f"{what} {name!r} contains a double quote, which Soda does not escape in SQL")
    return name


def parse_dataset(value: Any) -> tuple[str, tuple[str, ...], str]:
    """`<datasource>/<schema>/<table>` -> (datasource, prefixes, table)."""
    if not isinstance(value, str) or not value.strip():
        raise ContractProblem("'dataset' must be a string like <datasource>/<schema>/<table>")
    parts = value.strip().split("/")
    if len(parts) < 2 or any(not p for p in parts):
        raise ContractProblem(f"'dataset' {value!r} must look like <datasource>/<schema>/<table>")
    for part in parts:
        _identifier(part, "dataset part")
    if not _NAME_OK.match(parts[-1]):
        raise ContractProblem(
            f"table {parts[-1]!r} cannot be a Dagster asset key (only letters, digits and '_' are allowed)"
        )
    return parts[0], tuple(parts[1:-1]), parts[-1]


def parse_contract(path: Path, text: str) -> ContractSpec:
    """Parse one contract's text; raise ContractProblem naming what is wrong."""
    try:
        doc = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise ContractProblem(f"not valid YAML: {exc}") from exc
    if not isinstance(doc, Mapping):
        raise ContractProblem("a contract must be a YAML mapping with 'dataset' and 'columns'")
    datasource, prefixes, table = parse_dataset(doc.get("dataset"))
    contract_attributes = doc.get("check_attributes") or {}
    if not isinstance(contract_attributes, Mapping):
        raise ContractProblem("'check_attributes' must be a mapping")
    raw_columns = doc.get("columns")
    if not isinstance(raw_columns, list):
        raise ContractProblem("'columns' must be a list of columns (Soda requires it)")

    columns: list[str] = []
    data_types: dict[str, str | None] = {}
    checks: list[CheckSpec] = []

    def add(kind: str, body: dict[str, Any], column: str | None, column_body: Mapping[str, Any]) -> None:
        where = f"column '{column}'" if column is not None else "dataset checks"
        allowed = COLUMN_CHECK_TYPES if column is not None else DATASET_CHECK_TYPES
        if kind not in allowed:
            known = ", ".join(sorted(allowed))
            raise ContractProblem(f"{where}: unknown check type '{kind}' (known here: {known})")
        qualifier = body.get("qualifier")
        qualifier = None if qualifier is None else str(qualifier)
        attributes = {**contract_attributes, **(body.get("attributes") or {})}
        blocking, severity = _policy(attributes, f"{where}, check '{kind}'", body.get("threshold"))
        used: tuple[str, ...] = ()
        rules: dict[str, Any] = {}
        if column is not None:
            used = (column,)
            rules = _rules(column_body, body)
            if kind == "invalid" and not any(k.startswith(("valid_", "invalid_")) for k in rules):
                raise ContractProblem(f"{where}: an 'invalid' check needs valid_*/invalid_* rules")
        elif kind == "freshness":
            ref = body.get("column")
            if not isinstance(ref, str):
                raise ContractProblem(f"{where}: 'freshness' needs a 'column'")
            used = (ref,)
        elif kind == "duplicate":
            refs = body.get("columns")
            if not isinstance(refs, list) or not refs or not all(isinstance(c, str) for c in refs):
                raise ContractProblem(f"{where}: a dataset 'duplicate' check needs 'columns', a list of names")
            used = tuple(refs)
        for ref in used:
            if ref not in data_types:
                raise ContractProblem(f"{where}: check '{kind}' names unknown column '{ref}' (not in 'columns')")
        checks.append(
            CheckSpec(
                name=check_name(kind, column, qualifier),
                kind=kind,
                soda_path=soda_path(kind, column, qualifier),
                column=column,
                qualifier=qualifier,
                columns=used,
                rules=rules,
                check_filter=(body.get("filter") or "").strip() or None,
                threshold=_threshold_text(body),
                title=_title(kind, column, body),
                blocking=blocking,
                severity=severity,
                whole_table=_whole_table(attributes, f"{where}, check '{kind}'"),
            )
        )

    for index, column_body in enumerate(raw_columns):
        if not isinstance(column_body, Mapping) or not isinstance(column_body.get("name"), str):
            raise ContractProblem(f"column {index + 1}: must be a mapping with a 'name' string")
        name = _identifier(column_body["name"], "column")
        if name in data_types:
            raise ContractProblem(f"column '{name}' is declared twice")
        data_type = column_body.get("data_type")
        data_types[name] = None if data_type is None else str(data_type)
        columns.append(name)
    for column_body in raw_columns:
        for kind, body in _check_items(column_body, f"column '{column_body['name']}'"):
            add(kind, body, column_body["name"], column_body)
    for kind, body in _check_items(doc, "dataset checks"):
        add(kind, body, None, {})

    seen: dict[str, str] = {}
    for spec in checks:
        if spec.name in seen:
            raise ContractProblem(
                f"two checks map to the name '{spec.name}' ({seen[spec.name]} and {spec.soda_path}); "
                "give one of them a 'qualifier'"
            )
        seen[spec.name] = spec.soda_path
    if not checks:
        raise ContractProblem("the contract has no checks")
    dataset_filter = doc.get("filter")
    variables = doc.get("variables") or {}
    if not isinstance(variables, Mapping):
        raise ContractProblem("'variables' must be a mapping of variable names")
    defaults = _variable_defaults(variables)
    text_filter = dataset_filter.strip() if isinstance(dataset_filter, str) and dataset_filter.strip() else None
    used = set(_VARIABLE_REFERENCE.findall(text_filter or ""))
    undeclared = sorted(used - {str(v) for v in variables})
    if undeclared:
        raise ContractProblem(f"'filter' uses variable '{undeclared[0]}', which is not declared under 'variables'")
    windowed = used & set(WINDOW_VARIABLES)
    if windowed and windowed != set(WINDOW_VARIABLES):
        both = " and ".join(WINDOW_VARIABLES)
        raise ContractProblem(f"'filter' must use both {both} (the partition window), or neither")
    return ContractSpec(
        path=path,
        datasource=datasource,
        prefixes=prefixes,
        table=table,
        columns=tuple(columns),
        data_types=data_types,
        checks=tuple(checks),
        dataset_filter=text_filter,
        variables=tuple(str(v) for v in variables),
        variable_defaults=defaults,
    )


def _variable_defaults(variables: Mapping[str, Any]) -> dict[str, str]:
    """`default:` of each declared variable that has a literal one (Soda-namespace defaults are Soda's)."""
    defaults: dict[str, str] = {}
    for name, body in variables.items():
        if body is not None and not isinstance(body, Mapping):
            raise ContractProblem(f"variable '{name}' must be a mapping (e.g. 'default: ...'), got {body!r}")
        default = (body or {}).get("default")
        if isinstance(default, str | int | float) and not isinstance(default, bool) and "${" not in str(default):
            defaults[str(name)] = str(default)
    return defaults


_DATASET_LINE = re.compile(r"^dataset:[ \t]*([^#\n]+)", re.MULTILINE)


def _guess_asset(path: Path, text: str) -> str:
    """The table a broken contract was meant for: its `dataset:` line, else the file name."""
    match = _DATASET_LINE.search(text)
    if match:
        table = match.group(1).strip().strip("'\"").rstrip("/").split("/")[-1].strip()
        if table:
            return safe_name_part(table)
    return safe_name_part(path.stem)


def load_contract(path: Path) -> ContractSpec | BrokenContract:
    """Parse one contract file; every problem becomes a BrokenContract, never an exception."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        return BrokenContract(path=path, asset_name=safe_name_part(path.stem), problem=f"cannot read the file: {exc}")
    try:
        return parse_contract(path, text)
    except ContractProblem as exc:
        return BrokenContract(path=path, asset_name=_guess_asset(path, text), problem=str(exc))


def contract_files(contracts_dir: Path) -> list[Path]:
    """Contract files under `contracts_dir` (recursively), in a stable order."""
    if not contracts_dir.is_dir():
        return []
    return sorted(p for p in contracts_dir.rglob("*") if p.is_file() and p.suffix in CONTRACT_SUFFIXES)


def discover_contracts(contracts_dir: Path) -> list[ContractSpec | BrokenContract]:
    """Every contract under `contracts_dir`; clashing check names make the later file broken."""
    taken: dict[tuple[str, str], Path] = {}
    result: list[ContractSpec | BrokenContract] = []
    for path in contract_files(contracts_dir):
        contract = load_contract(path)
        if isinstance(contract, ContractSpec):
            clashes = [c.name for c in contract.checks if (contract.asset_name, c.name) in taken]
            if clashes:
                other = taken[(contract.asset_name, clashes[0])]
                contract = BrokenContract(
                    path=path,
                    asset_name=contract.asset_name,
                    problem=f"check '{clashes[0]}' on '{contract.asset_name}' is already defined by {other}",
                )
        if isinstance(contract, BrokenContract):
            name = CONTRACT_VALID_CHECK
            if (contract.asset_name, name) in taken:
                name = f"{CONTRACT_VALID_CHECK}_{safe_name_part(path.stem)}"
            contract = BrokenContract(contract.path, contract.asset_name, contract.problem, name)
            taken[(contract.asset_name, name)] = path
        else:
            for check in contract.checks:
                taken[(contract.asset_name, check.name)] = path
        result.append(contract)
    return result


def checks_by_name(contract: ContractSpec, names: Iterable[str] | None = None) -> list[CheckSpec]:
    """The contract's checks, restricted to `names` when given (Dagster subset selection)."""
    if names is None:
        return list(contract.checks)
    wanted = set(names)
    return [c for c in contract.checks if c.name in wanted]
