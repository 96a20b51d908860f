#!/usr/bin/env bash
# Set everything up and run all tests (lint, unit, and integration against real DuckDB, dbt, Soda,
# Kafka, PostgreSQL and a real Dagster instance). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export SODA_CORE_TELEMETRY_ENABLED=false DO_NOT_TRACK=1
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# Start the broker up front (the first start resolves Kafka from Maven Central); stop it afterwards
# only if this script started it.
if ! .venv/bin/reliability kafka status >/dev/null 2>&1; then
  trap '.venv/bin/reliability kafka down >/dev/null 2>&1 || true' EXIT
fi
.venv/bin/reliability kafka up
if [ $# -eq 0 ]; then
  # Two workers (most tests wait on dbt, Kafka or the daemon), whole files per worker; then, alone, the
  # tests that stop and restart the shared broker.
  .venv/bin/python -m pytest -q --durations=15 -n 2 --dist loadfile -m "not serial"
  .venv/bin/python -m pytest -q --durations=5 -p no:cacheprovider -m serial
else
  .venv/bin/python -m pytest -q --durations=15 "$@"
fi
# No test may depend on today's date: run the incident and detection tests again a year ahead.
if [ $# -eq 0 ]; then
  echo "test.sh: incident, detection and lifecycle-rule tests again under a clock moved 365 days ahead"
  .venv/bin/python -m pytest -q -p no:cacheprovider --clock-shift-days=365 -n 2 --dist loadfile \
    tests/incidents tests/contracts tests/kafka/test_lag_rules.py tests/kafka/test_dlq.py \
    tests/kafka/test_ingest_units.py tests/kafka/test_validation.py tests/mitigation/test_plan.py \
    tests/reconciliation/test_plan.py tests/reconciliation/test_verdict.py tests/review/test_causes.py \
    tests/review/test_metrics.py tests/review/test_postmortem.py tests/anomaly/test_detector.py \
    tests/anomaly/test_cli_and_config.py tests/anomaly/test_discovery.py tests/anomaly/test_judge_run.py \
    tests/ci/test_core.py
fi
