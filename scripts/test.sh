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
# Two phases: everything that shares the services peacefully runs on three workers (the
# integration tests mostly wait on containers, so three overlap well on two cores); the few
# tests that stop PostgreSQL or the Docker engine run alone afterwards. Exit code 5 is "no test
# selected", which a filtered run (`make test -- -k name`) may get in one of the phases.
status=0
.venv/bin/pytest -q -p no:cacheprovider -n "${ODOOOPS_TEST_WORKERS:-3}" --dist load \
  -m "not serial" "$@" || status=$?
[ "$status" = 5 ] && status=0
serial=0
.venv/bin/pytest -q -p no:cacheprovider -m serial "$@" || serial=$?
[ "$serial" = 5 ] && serial=0
[ "$status" != 0 ] && exit "$status"
exit "$serial"
