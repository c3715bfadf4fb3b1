#!/usr/bin/env bash
# `make run`: set up the machine, make a local state repository from state-repo-template/ plus
# the example project, and run the daemon on it until Ctrl-C.
#
# Everything lives under .odooops/example/ (state.git and app.git are bare repositories you can
# clone, commit to and push, as a user would). A second run reuses them, so your commits stay.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${ODOOOPS_EXAMPLE_DIR:-$ROOT/.odooops/example}
log() { printf '[run] %s\n' "$*" >&2; }

bash scripts/setup.sh all
mkdir -p "$WORK"
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

if [ ! -d "$WORK/app.git" ]; then
  log "creating the example app repository $WORK/app.git"
  tmp=$(mktemp -d)
  cp -r examples/acme-addons/. "$tmp/"
  git_as_user -C "$tmp" init -q
  git_as_user -C "$tmp" add -A
  git_as_user -C "$tmp" commit -qm "ACME addons"
  git_as_user -C "$tmp" branch release/v1
  git_as_user -C "$tmp" checkout -qb feature/crm-reports
  git_as_user -C "$tmp" commit -q --allow-empty -m "Start CRM reports"
  git init -q --bare "$WORK/app.git"
  git_as_user -C "$tmp" push -q "$WORK/app.git" main release/v1 feature/crm-reports
  rm -rf "$tmp"
fi

if [ ! -d "$WORK/state.git" ]; then
  log "creating the state repository $WORK/state.git from state-repo-template/"
  tmp=$(mktemp -d)
  cp -r state-repo-template/. "$tmp/"
  cp -r examples/state/. "$tmp/"
  sed -i "s|@APP_REPO_URL@|file://$WORK/app.git|; s|@ODOO_IMAGE@|$ODOO_IMAGE|" "$tmp/projects/acme.yaml"
  sed -i "s|image: postgres:15|image: $DEV_DB_IMAGE|" "$tmp/odooops.yaml"
  sed -i "s|file:///var/lib/odooops/backups|file://$WORK/backups|" "$tmp/odooops.yaml"
  .venv/bin/odooops validate "$tmp"
  git_as_user -C "$tmp" init -q
  git_as_user -C "$tmp" add -A
  git_as_user -C "$tmp" commit -qm "Platform from state-repo-template with the ACME example"
  git init -q --bare "$WORK/state.git"
  git_as_user -C "$tmp" push -q "$WORK/state.git" main
  rm -rf "$tmp"
fi

[ -f "$WORK/data/master.key" ] || .venv/bin/odooops init-key "$WORK/data/master.key"
# Secret references of a state may name files under /etc/odooops/secrets only (setup.sh made
# it, root only, with the PostgreSQL admin password in it): the backup key lives there too.
[ -f /etc/odooops/secrets/backup.key ] || .venv/bin/odooops init-key /etc/odooops/secrets/backup.key
mkdir -p -m 0700 "$WORK/backups"
log "state repository: git clone $WORK/state.git  (commit and push to change the platform)"
log "status in another terminal: .venv/bin/odooops status --data-dir $WORK/data"
log "data: odooops db backups acme/production, odooops mail list acme/staging (after odooops login)"
log "API on http://127.0.0.1:8089/v1; a token: .venv/bin/odooops token create --data-dir $WORK/data --subject \$USER --scope env:write"
exec .venv/bin/odooops daemon --state-repo "file://$WORK/state.git" --data-dir "$WORK/data" \
  --instance example --master-key-file "$WORK/data/master.key" "$@"
