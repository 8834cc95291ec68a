#!/usr/bin/env bash
# The tests: set up, lint (the library, tests, benchmarks, notebooks and assignments), then
# unit tests, notebooks (quick profile), the book build and the browser test of the book.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ruff check .
ruff format --check .
python -m pytest -q "$@"
