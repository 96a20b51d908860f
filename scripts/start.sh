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

days=${SHOP_DAYS:-7}
# The daily partitions start where the data starts (and end with today): "Materialize all" means this week.
export RELIABILITY_PARTITIONS_START_DATE=${RELIABILITY_PARTITIONS_START_DATE:-$(date -u -d "-$((days - 1)) days" +%F)}
echo "start.sh: daily partitions start on $RELIABILITY_PARTITIONS_START_DATE; for the CLI in another shell:"
echo "  export RELIABILITY_PARTITIONS_START_DATE=$RELIABILITY_PARTITIONS_START_DATE DAGSTER_HOME=$DAGSTER_HOME"
.venv/bin/reliability kafka up
.venv/bin/reliability kafka produce --days "$days"
# From here the platform runs by itself: the orders sensor ingests the topic (raw_orders' contract runs after
# every micro-batch), the automation sensors load raw_customers / raw_payments and build every daily partition
# of the dbt models once its inputs are in, and the incident sensor watches the event log.

exec .venv/bin/dagster dev -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}" -w workspace.yaml
