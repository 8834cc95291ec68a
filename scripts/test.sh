#!/usr/bin/env bash
# The tests: set up, lint, then unit tests, notebooks (quick profile) and the book build.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ruff check course_lib tests benchmarks
ruff format --check course_lib tests benchmarks
python -m pytest -q "$@"
