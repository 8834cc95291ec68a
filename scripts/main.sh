#!/usr/bin/env bash
# The main job: set up, execute every chapter notebook in the quick profile, build the book.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
jupyter-book build . -W --keep-going
echo "The book is in _build/html/index.html"
