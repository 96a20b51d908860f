"""Which circuit-breaker mode applies to an incident: `auto`, `suggest` or `off`, per severity and tier.

Read from the `mitigation` section of the incidents configuration (incidents.yaml):

    mitigation:
      default: off
      rules:                      # first match wins
        - severities: [SEV1, SEV2]
          mode: auto
        - severities: [SEV3]
          tiers: [tier1]          # optional: only when the root asset has one of these tiers
          mode: suggest

Pure: no Dagster, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reliability.errors import ConfigError
from reliability.incidents.model import FaultClass, Severity
from reliability.incidents.triage import parse_tier

# Incidents the breaker never contains by policy: stale data or a lagging consumer are fixed by running
# more, not less (pausing the feed would deepen them). `reliability incidents pause` still works.
NOT_CONTAINED: frozenset[FaultClass] = frozenset({FaultClass.FRESHNESS, FaultClass.CONSUMER_LAG})


class Mode(StrEnum):
    AUTO = "auto"  # carry out the actions and move the incident to mitigated
    SUGGEST = "suggest"  # record (and print) the actions, change nothing
    OFF = "off"


@dataclass(frozen=True)
class PolicyRule:
    severities: frozenset[Severity]
    tiers: frozenset[int] | None  # None: any tier
    mode: Mode

    def matches(self, severity: Severity, tier: int | None) -> bool:
        return severity in self.severities and (self.tiers is None or tier in self.tiers)


@dataclass(frozen=True)
class MitigationPolicy:
    rules: tuple[PolicyRule, ...] = ()
    default: Mode = Mode.OFF

    def mode_for(self, severity: str, root_tier: str | int | None = None, fault_class: str | None = None) -> Mode:
        """The mode for an incident of `severity` whose root asset has `root_tier` (first rule wins);
        always off for the fault classes in NOT_CONTAINED."""
        if fault_class is not None and fault_class in NOT_CONTAINED:
            return Mode.OFF
        sev, tier = Severity(severity), parse_tier(root_tier)
        for rule in self.rules:
            if rule.matches(sev, tier):
                return rule.mode
        return self.default


RULE_KEYS = {"severities", "tiers", "mode"}
SECTION_KEYS = {"default", "rules"}


def _mode(value: object, where: str) -> Mode:
    # YAML 1.1 reads a bare `off` as False: accept it as the word the user wrote
    text = "off" if value is False else str(value).strip().lower()
    try:
        return Mode(text)
    except ValueError:
        raise ConfigError(f"{where}: mode {value!r} is not one of auto, suggest, off") from None


def policy_from_config(raw: object, source: str) -> MitigationPolicy:
    """The `mitigation` section as a policy; every error names the file and the field at fault."""
    if raw is None:
        return MitigationPolicy()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: mitigation: expected a mapping with 'default' and 'rules'")
    unknown = sorted(set(raw) - SECTION_KEYS)
    if unknown:
        raise ConfigError(f"{source}: mitigation: unknown field(s) {unknown}; known: {sorted(SECTION_KEYS)}")
    default = _mode(raw.get("default", "off"), f"{source}: mitigation.default")
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise ConfigError(f"{source}: mitigation.rules: expected a list of rules")
    rules = []
    for i, item in enumerate(rules_raw):
        where = f"{source}: mitigation.rules[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError(f"{where}: expected a mapping with severities, mode and optional tiers")
        unknown = sorted(set(item) - RULE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}; known: {sorted(RULE_KEYS)}")
        if "mode" not in item or not item.get("severities"):
            raise ConfigError(f"{where}: needs 'severities' (e.g. [SEV1, SEV2]) and 'mode'")
        severities = item["severities"] if isinstance(item["severities"], list) else [item["severities"]]
        try:
            sevs = frozenset(Severity(str(s).upper()) for s in severities)
        except ValueError:
            raise ConfigError(f"{where}.severities: {severities!r} must be among SEV1..SEV4") from None
        tiers = None
        if item.get("tiers") is not None:
            raw_tiers = item["tiers"] if isinstance(item["tiers"], list) else [item["tiers"]]
            parsed = [parse_tier(t) for t in raw_tiers]
            if any(t is None for t in parsed):
                raise ConfigError(f"{where}.tiers: {raw_tiers!r} must be tiers like tier1, tier2")
            tiers = frozenset(t for t in parsed if t is not None)
        rules.append(PolicyRule(sevs, tiers, _mode(item["mode"], f"{where}.mode")))
    return MitigationPolicy(tuple(rules), default)
