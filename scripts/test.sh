#!/usr/bin/env bash
# The test command: sets up if needed, then runs the whole suite (a run with no test is a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
. .venv/bin/activate
export PREFECT_HOME="$PWD/.cache/prefect-test"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
python -m pytest "$@"
rc=$?
[ $rc -eq 5 ] && { echo "no tests were collected: failing" >&2; exit 1; }
exit $rc
