#!/usr/bin/env bash
# `make run`: set up the machine, make a local state repository from state-repo-template/ plus
# the example project, and run the daemon on it until Ctrl-C.
#
# Everything lives under .odooops/example/ (state.git and app.git are bare repositories you can
# clone, commit to and push, as a user would). A second run reuses them, so your commits stay.
# Arguments are passed to `odooops daemon` (a later option wins: `--listen 127.0.0.1:8090`).
#
#   ODOOOPS_EXAMPLE_DIR   where the example lives (default .odooops/example)
#   ODOOOPS_SKIP_SETUP=1  skip scripts/setup.sh (the services and images are known to be there)
#   ODOOOPS_PYTHON        the Python that runs odooops (default .venv/bin/python)
#   ODOOOPS_EXAMPLE_PROJECT  the example project's name (default acme). Container and database
#                         names come from project names, so a second example beside a running
#                         one (another checkout, another --instance) needs a name of its own.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${ODOOOPS_EXAMPLE_DIR:-$ROOT/.odooops/example}
PROJECT=${ODOOOPS_EXAMPLE_PROJECT:-acme}
LOG=${ODOOOPS_SETUP_LOG:-$ROOT/build/setup.log}
log() { printf '[run] %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/quiet.sh
source "$ROOT/scripts/lib/quiet.sh"
# `-m` from the checkout: this checkout's code, whichever environment provides the packages.
odooops() { "${ODOOOPS_PYTHON:-.venv/bin/python}" -m reconciler.cli "$@"; }

[ "${ODOOOPS_SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh all
mkdir -p "$WORK" "$(dirname "$LOG")"
# shellcheck disable=SC1091
source build/images.env

# The real workload is the official image; offline, the test stand-in takes its place.
ODOO_IMAGE=odoo:19.0
DEV_DB_IMAGE=postgres:15
if ! docker image inspect "$ODOO_IMAGE" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$ODOO_IMAGE" >/dev/null 2>&1; then
  ODOO_IMAGE=$ODOOOPS_FIXTURE_ODOO_IMAGE
  log "odoo:19.0 cannot be pulled here: using the offline stand-in image $ODOO_IMAGE"
  log "(a test fixture that honours the odoo:19.0 contract; it is not Odoo)"
fi
if ! docker image inspect "$DEV_DB_IMAGE" >/dev/null 2>&1 && ! timeout 60 docker pull -q "$DEV_DB_IMAGE" >/dev/null 2>&1; then
  DEV_DB_IMAGE=$ODOOOPS_FIXTURE_POSTGRES_IMAGE
  log "postgres:15 cannot be pulled here: using the offline PostgreSQL image $DEV_DB_IMAGE"
fi

git_as_user() { git -c user.name="ACME Developer" -c user.email=dev@acme.example -c init.defaultBranch=main "$@"; }

# A bare repository whose HEAD names main, the branch pushed to it: `git clone` then checks
# out main (a plain `git init --bare` may name master, and the clone comes out empty).
bare_repo() {
  git_as_user init -q --bare "$1"
  git --git-dir "$1" symbolic-ref HEAD refs/heads/main
}
# Repositories made by an earlier version of this script: point HEAD at main, add new branches.
repair() {
  local repo=$1
  shift
  if git --git-dir "$repo" rev-parse -q --verify refs/heads/main >/dev/null \
      && ! git --git-dir "$repo" rev-parse -q --verify HEAD >/dev/null; then
    git --git-dir "$repo" symbolic-ref HEAD refs/heads/main
  fi
  for branch in "$@"; do
    git --git-dir "$repo" rev-parse -q --verify "refs/heads/$branch" >/dev/null \
      || git --git-dir "$repo" branch "$branch" main
  done
}

# The app repository: main (production), release/v1 (staging), release/v2 (the next release,
# which has no environment until someone declares one: the quick start's QA),
# feature/crm-reports (an ephemeral environment from the feature/* rule).
if [ ! -d "$WORK/app.git" ]; then
  log "creating the example app repository $WORK/app.git"
  tmp=$(mktemp -d)
  cp -r examples/acme-addons/. "$tmp/"
  git_as_user -C "$tmp" init -q
  git_as_user -C "$tmp" add -A
  git_as_user -C "$tmp" commit -qm "ACME addons"
  git_as_user -C "$tmp" branch release/v1
  git_as_user -C "$tmp" checkout -qb release/v2
  git_as_user -C "$tmp" commit -q --allow-empty -m "Start release v2"
  git_as_user -C "$tmp" checkout -qb feature/crm-reports main
  git_as_user -C "$tmp" commit -q --allow-empty -m "Start CRM reports"
  bare_repo "$WORK/app.git"
  git_as_user -C "$tmp" push -q "$WORK/app.git" main release/v1 release/v2 feature/crm-reports
  rm -rf "$tmp"
fi
repair "$WORK/app.git" release/v2

if [ ! -d "$WORK/state.git" ]; then
  log "creating the state repository $WORK/state.git from state-repo-template/"
  tmp=$(mktemp -d)
  cp -r state-repo-template/. "$tmp/"
  cp -r examples/state/. "$tmp/"
  if [ "$PROJECT" != acme ]; then
    mv "$tmp/projects/acme.yaml" "$tmp/projects/$PROJECT.yaml"
    mv "$tmp/environments/acme" "$tmp/environments/$PROJECT"
  fi
  sed -i "s|@APP_REPO_URL@|file://$WORK/app.git|; s|@ODOO_IMAGE@|$ODOO_IMAGE|" "$tmp/projects/$PROJECT.yaml"
  sed -i "s|image: postgres:15|image: $DEV_DB_IMAGE|" "$tmp/odooops.yaml"
  sed -i "s|file:///var/lib/odooops/backups|file://$WORK/backups|" "$tmp/odooops.yaml"
  quiet odooops validate "$tmp"
  git_as_user -C "$tmp" init -q
  git_as_user -C "$tmp" add -A
  git_as_user -C "$tmp" commit -qm "Platform from state-repo-template with the ACME example"
  bare_repo "$WORK/state.git"
  git_as_user -C "$tmp" push -q "$WORK/state.git" main
  rm -rf "$tmp"
fi
repair "$WORK/state.git"

mkdir -p -m 0700 "$WORK/data"
[ -f "$WORK/data/master.key" ] || quiet odooops init-key "$WORK/data/master.key"
# Secret references of a state may name files under /etc/odooops/secrets only (setup.sh made
# it, root only, with the PostgreSQL admin password in it): the backup key lives there too.
[ -f /etc/odooops/secrets/backup.key ] || quiet odooops init-key /etc/odooops/secrets/backup.key
mkdir -p -m 0700 "$WORK/backups"
log "state repository: git clone $WORK/state.git  (commit and push to change the platform)"
log "in another terminal, in this checkout: source .venv/bin/activate  (puts odooops on PATH)"
log "then: odooops status --data-dir $WORK/data; the API is on http://127.0.0.1:8089/v1"
log "daemon output follows (Ctrl-C stops it; the environments keep running)"
exec "${ODOOOPS_PYTHON:-.venv/bin/python}" -m reconciler.cli daemon \
  --state-repo "file://$WORK/state.git" --data-dir "$WORK/data" \
  --instance example --master-key-file "$WORK/data/master.key" "$@"
