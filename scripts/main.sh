#!/usr/bin/env bash
# The main job: set up, then build the book readers get (`course book`): each chapter from its
# saved full-profile run (results/executed/), else from a quick-profile run executed now and
# labelled as such on its page; warnings count as errors.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
course book
