#!/usr/bin/env bash
# Set up everything the tests need, then run the quality gates and the whole test suite.
# usage: scripts/test.sh [pytest args...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/ruff format --check src tests benchmarks
.venv/bin/mypy
export SOFAMESH_TEST_ALL_EXTRAS=1  # every extra is installed: a test that needs one must not skip
exec .venv/bin/pytest -p no:cacheprovider "$@"
