#!/usr/bin/env bash
# `make test`: install and start what the suite needs (Docker engine, PostgreSQL, fixture
# images, the virtualenv), then lint and run every test. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
# shellcheck disable=SC1091
set -a; source build/images.env; set +a
export TESTCONTAINERS_RYUK_DISABLED=true
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache >/dev/null || .venv/bin/lint-imports --no-cache
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
