#!/usr/bin/env bash
# Set up (Python environment only) and run the demo mesh on the embedded file registry.
# usage: scripts/demo.sh [--keep-running]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh --demo-only
exec .venv/bin/python -m sofamesh.demo "$@"
