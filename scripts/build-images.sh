#!/usr/bin/env bash
# Build the test fixture images offline and write build/images.env.
#
#   odooops-fixture/base:<hash>          mmdebstrap bookworm + tests/images/base-packages.txt
#   odooops-fixture/odoo-standin:<hash>  tests/images/odoo-standin (contract of odoo:19.0)
#   odooops-fixture/postgres:<hash>      tests/images/postgres (contract of postgres:15)
#   odooops-fixture/caddy:<hash>         tests/images/caddy (Debian's caddy; contract of caddy:2)
#   odooops-fixture/pebble:<hash>        tests/images/pebble (Debian's pebble, the ACME test CA)
#
# No registry is reachable, so the base is bootstrapped from Debian packages and
# imported; the fixtures are `docker build`s FROM it (caddy and pebble install their
# Debian package in their own build, so the shared base stays as it is). Each tag is a hash of
# its inputs, so a rerun with unchanged inputs builds nothing. Consumers use the
# hashed tags written to build/images.env (`:latest` is only a convenience).
#
# Output: a progress line per image built (none when nothing changed) and build/images.env on
# stdout; what mmdebstrap and docker say goes to the log ($ODOOOPS_SETUP_LOG, by default
# build/setup.log), whose last lines are shown when a build fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
IMAGES="$ROOT/tests/images"
OUT_DIR="$ROOT/build"
SUITE=bookworm
# shellcheck source=scripts/lib/debian-base.sh
source "$ROOT/scripts/lib/debian-base.sh"
# The recipe is hashed with the package list: changing a line here rebuilds the base.
# Fixed ids are written before any package script runs, because adduser would
# otherwise hand gid 101 to ssl-cert: postgres is 999:999 as in postgres:15,
# odoo is 101:101 as in odoo:19.0. Debian's default cluster is dropped: the
# postgres fixture runs initdb on its own PGDATA.
# shellcheck disable=SC2016 # "$1" is the chroot, expanded by mmdebstrap's hooks
RECIPE=(
  "${BASE_RECIPE[@]}"
  '--essential-hook=printf "%s\n" "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" "odoo:x:101:101:Odoo:/var/lib/odoo:/usr/sbin/nologin" >> "$1/etc/passwd"'
  '--essential-hook=printf "%s\n" "postgres:x:999:" "odoo:x:101:" >> "$1/etc/group"'
  '--customize-hook=rm -rf "$1/etc/postgresql/15" "$1/var/lib/postgresql/15"'
  '--customize-hook=mkdir -p "$1/var/lib/odoo" && chown 101:101 "$1/var/lib/odoo"'
)

LOG=${ODOOOPS_SETUP_LOG:-$OUT_DIR/setup.log}
log() { printf 'build-images: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib/quiet.sh
source "$ROOT/scripts/lib/quiet.sh"

# Hash of a tree: sorted relative paths with their contents; caches are not inputs.
tree_hash() {
  (cd "$1" && find . -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
    | LC_ALL=C sort -z | xargs -0 sha256sum)
}


ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  log "installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a NEEDRESTART_SUSPEND=1
  apt-get install -y -q mmdebstrap >>"$LOG" 2>&1 \
    || { quiet apt-get update -q && quiet apt-get install -y -q mmdebstrap; }
}

build_base() {
  local tag=$1 packages
  packages="$(grep -v '^\s*#' "$IMAGES/base-packages.txt" | tr -s ' \n' ',' | sed 's/^,//; s/,$//')"
  ensure_mmdebstrap
  log "bootstrapping $tag from Debian $SUITE (a few minutes, once)"
  quiet bootstrap "$tag" "$packages"
}

bootstrap() {
  # stdin is closed on purpose: mmdebstrap reads sources from a non-tty stdin.
  mmdebstrap --quiet "${RECIPE[@]}" --include="$2" "$SUITE" - "${SOURCES[@]}" </dev/null \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["bash"]' \
        - "$1"
}

build_fixture() {
  local tag=$1 dir=$2 base=$3
  log "building $tag"
  # The legacy builder: this engine has no BuildKit/buildx (its deprecation notice and the
  # build output go to the log).
  quiet env DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$base" -t "$tag" "$dir"
}

main() {
  mkdir -p "$OUT_DIR" "$(dirname "$LOG")"
  # Concurrent runs (parallel test sessions) wait for each other instead of racing.
  exec 9>"$OUT_DIR/.build-images.lock"
  flock 9

  local base_hash base odoo_hash odoo pg_hash pg caddy_hash caddy pebble_hash pebble
  base_hash="$( { cat "$IMAGES/base-packages.txt"; printf '%s\n' "$SUITE" "${RECIPE[@]}"; } | short_hash)"
  base="odooops-fixture/base:$base_hash"
  have_image "$base" || build_base "$base"

  odoo_hash="$( { echo "$base"; tree_hash "$IMAGES/odoo-standin"; } | short_hash)"
  odoo="odooops-fixture/odoo-standin:$odoo_hash"
  have_image "$odoo" || build_fixture "$odoo" "$IMAGES/odoo-standin" "$base"

  pg_hash="$( { echo "$base"; tree_hash "$IMAGES/postgres"; } | short_hash)"
  pg="odooops-fixture/postgres:$pg_hash"
  have_image "$pg" || build_fixture "$pg" "$IMAGES/postgres" "$base"

  caddy_hash="$( { echo "$base"; tree_hash "$IMAGES/caddy"; } | short_hash)"
  caddy="odooops-fixture/caddy:$caddy_hash"
  have_image "$caddy" || build_fixture "$caddy" "$IMAGES/caddy" "$base"

  pebble_hash="$( { echo "$base"; tree_hash "$IMAGES/pebble"; } | short_hash)"
  pebble="odooops-fixture/pebble:$pebble_hash"
  have_image "$pebble" || build_fixture "$pebble" "$IMAGES/pebble" "$base"

  quiet docker tag "$base" odooops-fixture/base:latest
  quiet docker tag "$odoo" odooops-fixture/odoo-standin:latest
  quiet docker tag "$pg" odooops-fixture/postgres:latest
  quiet docker tag "$caddy" odooops-fixture/caddy:latest
  quiet docker tag "$pebble" odooops-fixture/pebble:latest

  printf '%s\n' "ODOOOPS_FIXTURE_ODOO_IMAGE=$odoo" "ODOOOPS_FIXTURE_POSTGRES_IMAGE=$pg" \
    "ODOOOPS_FIXTURE_CADDY_IMAGE=$caddy" "ODOOOPS_FIXTURE_PEBBLE_IMAGE=$pebble" \
    > "$OUT_DIR/images.env.tmp"
  mv "$OUT_DIR/images.env.tmp" "$OUT_DIR/images.env"
  cat "$OUT_DIR/images.env"
}

main "$@"
