#!/usr/bin/env bash
# The main job: set everything up, start Kafka, load a week of shop data (orders through Kafka),
# and start Dagster (webserver + daemon) on http://127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
export SODA_CORE_TELEMETRY_ENABLED=false DO_NOT_TRACK=1
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

.venv/bin/reliability shop generate --days "${SHOP_DAYS:-7}" --tables raw_customers,raw_payments
.venv/bin/reliability kafka up
.venv/bin/reliability kafka produce --days "${SHOP_DAYS:-7}"

exec .venv/bin/dagster dev -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}" -w workspace.yaml
