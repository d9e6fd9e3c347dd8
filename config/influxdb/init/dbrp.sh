#!/bin/sh
# Maps an InfluxQL database and retention policy onto the bucket, so that the InfluxQL
# dashboards (and any 1.x reader) work on InfluxDB 2.x: without a mapping, InfluxQL there
# answers "database not found". The influxdb image runs this once, on the first start with an
# empty volume, after its own setup (docker-compose.yml: DOCKER_INFLUXDB_INIT_MODE=setup): it
# runs the executable *.sh files of /docker-entrypoint-initdb.d with the influx CLI already
# configured with the admin token and DOCKER_INFLUXDB_INIT_BUCKET_ID set to the new bucket.
set -eu
org="${DOCKER_INFLUXDB_INIT_ORG:?set DOCKER_INFLUXDB_INIT_ORG}"
bucket="${DOCKER_INFLUXDB_INIT_BUCKET:?set DOCKER_INFLUXDB_INIT_BUCKET}"
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?the influxdb image sets it after its setup}"
database="${INFLUXQL_DATABASE:-$bucket}"
retention_policy="${INFLUXQL_RETENTION_POLICY:-autogen}"
influx v1 dbrp create --org "$org" --bucket-id "$bucket_id" \
  --db "$database" --rp "$retention_policy" --default
echo "dbrp.sh: InfluxQL $database/$retention_policy reads and writes bucket $bucket ($bucket_id)"
