#!/usr/bin/env bash
# Run the test suite in .venv (created and filled from requirements.txt when needed).
# Extra arguments go to pytest, e.g. ./test.sh -k config -x
set -euo pipefail
cd "$(dirname "$0")"
. .ci/venv.sh
# pytest exits 5 when it collects no tests, so an empty suite fails here instead of looking green.
python -m pytest "$@"
