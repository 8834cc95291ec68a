#!/usr/bin/env bash
# The tests: set up, lint (the library, tests, benchmarks, notebooks and assignments), then
#   bash scripts/test.sh          everything (what .ci/run calls): unit tests, trainings, the
#                                 grader end to end, notebooks (quick profile), the book build
#                                 and its browser test; prints the 15 slowest tests
#   bash scripts/test.sh --fast   lint and the tests marked not slow (no training beyond a few
#                                 batches, no notebook, kernel, sandbox, compiler or book build)
# Other arguments go to pytest (e.g. -k taylor, -x).
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ruff check .
ruff format --check .
if [ "${1:-}" = "--fast" ]; then
  shift
  python -m pytest -q -m "not slow" "$@"
else
  python -m pytest -q --durations=15 "$@"
fi
