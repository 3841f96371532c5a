#!/usr/bin/env bash
# The test command: sets up if needed, checks the import layers, then runs the whole suite (a run
# with no test is a failure).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
. .venv/bin/activate
export PREFECT_HOME="$PWD/.cache/prefect-test"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The layers point one way (pyproject.toml, [tool.importlinter]): a wrong arrow fails the run.
lint-imports --no-cache || exit 1
python -m pytest "$@"
rc=$?
[ $rc -eq 5 ] && { echo "no tests were collected: failing" >&2; exit 1; }
exit $rc
