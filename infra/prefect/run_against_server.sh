#!/usr/bin/env bash
# The pipeline against a real `prefect server start` on localhost, then one scheduled-deployment run
# through a process work pool and worker — the path a cluster takes, on one machine.
#
#   infra/prefect/run_against_server.sh [WORKDIR] [PRESET]     # defaults: a temp folder, preset "tests"
#
# Steps: start a server on a free port with its own PREFECT_HOME (SQLite) → run the pipeline flow against
# it (python -m flows.pipeline) → create the process work pool `fv3-downscale` → `prefect deploy --all`
# (prefect.yaml) → a run of the `incremental-downscale` deployment with this workdir's config as its
# parameter → `prefect worker start --run-once` executes it → the run must end Completed. The server is
# stopped on exit. Takes ~2 min with the tests preset (use PRESET=demo for the demo's data).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BIN=${BIN:-$REPO/.venv/bin}
WORKDIR=$(realpath -m "${1:-$(mktemp -d)/run}")
PRESET=${2:-tests}

export PREFECT_HOME=$(mktemp -d)
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export FV3_DOWNSCALE_HOME=$REPO                       # the pull step of prefect.yaml
PORT=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PREFECT_API_URL=http://127.0.0.1:$PORT/api

"$BIN/prefect" server start --host 127.0.0.1 --port "$PORT" > "$PREFECT_HOME/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
healthy() { "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/health", timeout=2)' \
              "$PREFECT_API_URL" 2>/dev/null; }
for _ in $(seq 120); do
  healthy && break
  kill -0 $SERVER 2>/dev/null || { cat "$PREFECT_HOME/server.log"; exit 1; }
  sleep 1
done
healthy || { echo "server did not start" >&2; exit 1; }
echo "server: $PREFECT_API_URL"

echo "== pipeline flow against the server"
"$BIN/python" -m flows.pipeline --demo --preset "$PRESET" --workdir "$WORKDIR"

echo "== deployments through a process work pool"
"$BIN/prefect" work-pool create fv3-downscale --type process --overwrite
"$BIN/prefect" --no-prompt deploy --all
PARAMS=$("$BIN/python" -c "
import json, sys
from downscale.pipeline_config import demo_config
print(json.dumps({'config': demo_config(sys.argv[1], sys.argv[2]).model_dump(mode='json')}))" "$WORKDIR" "$PRESET")
"$BIN/prefect" deployment run incremental-downscale/incremental-downscale --params "$PARAMS"
"$BIN/prefect" worker start --pool fv3-downscale --type process --run-once
"$BIN/python" - <<'PY'
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

with get_client(sync_client=True) as client:
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["incremental-downscale"])))
    done = [r for r in runs if r.state and r.state.is_final()]
    for r in done:
        print(f"deployment run {r.name}: {r.state.type.value}")
    if not done or not all(r.state.is_completed() for r in done):
        raise SystemExit("the deployment run did not complete")
PY
echo "ok: pipeline and a deployment run against $PREFECT_API_URL; outputs in $WORKDIR"
