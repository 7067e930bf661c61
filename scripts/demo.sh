#!/usr/bin/env bash
# The README's first command: install everything, then run the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
exec ./bin/vxswarm lab demo "$@"
