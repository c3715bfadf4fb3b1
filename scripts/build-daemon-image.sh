#!/usr/bin/env bash
# Build the daemon's own image, odooops/daemon:<version from pyproject.toml>, and print its tag.
#
#   bash scripts/build-daemon-image.sh            # stdout: the tag; build output on stderr
#   ODOOOPS_BASE=python:3.11-slim bash ...        # force a base image
#   ODOOOPS_OFFLINE_WHEELS=0 bash ...             # no host wheels: pip in the build uses the index
#
# Steps, each skipped when its inputs did not change (a rerun takes a few seconds):
#   1. base: python:3.11-slim when it is present or can be pulled; otherwise a Debian bookworm
#      base bootstrapped with mmdebstrap and imported, odooops-build/python-base:<hash of its
#      package list and recipe> (no registry is needed).
#   2. wheels: the pinned dependencies of requirements.lock and the build backend (setuptools)
#      as wheels in build/wheels, made by the host's pip, so `docker build` needs no network.
#      Their absence is fine: the Dockerfile then installs from the package index.
#   3. `docker build` of ./Dockerfile; its layer cache makes an unchanged rebuild a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="$ROOT/build"
WHEELS="$OUT_DIR/wheels"
OFFICIAL_BASE=python:3.11-slim
SUITE=bookworm
# shellcheck source=scripts/lib/debian-base.sh
source "$ROOT/scripts/lib/debian-base.sh"
# What python:3.11-slim brings that the daemon uses: Python 3.11 with venv (build stage only),
# CA certificates (libgit2 and https remotes), /etc/services and time zones (APScheduler).
# postgresql-client: pg_dump, pg_restore and psql for copies, backups and restores.
BASE_PACKAGES=(ca-certificates netbase tzdata python3 python3-venv postgresql-client)
# Hashed with the package list: changing a line here makes a new base.
# shellcheck disable=SC2016 # "$1" is the chroot, expanded by mmdebstrap's hooks
RECIPE=(
  "${BASE_RECIPE[@]}"
  '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'
)

log() { printf 'build-daemon-image: %s\n' "$*" >&2; }

host_python() {
  if [[ -x "$ROOT/.venv/bin/python" ]]; then echo "$ROOT/.venv/bin/python"; else echo python3; fi
}

ensure_mmdebstrap() {
  command -v mmdebstrap >/dev/null 2>&1 && return
  log "installing mmdebstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q mmdebstrap >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q mmdebstrap >/dev/null; }
}

build_local_base() {
  local tag=$1 packages
  packages="$(IFS=,; echo "${BASE_PACKAGES[*]}")"
  ensure_mmdebstrap
  log "bootstrapping $tag ($packages)"
  # stdin is closed on purpose: mmdebstrap reads sources from a non-tty stdin.
  mmdebstrap --quiet "${RECIPE[@]}" --include="$packages" "$SUITE" - "${SOURCES[@]}" </dev/null \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$tag" >&2
}

# The base image to build on: forced, official (present or pullable), else the local one.
choose_base() {
  if [[ -n "${ODOOOPS_BASE:-}" ]]; then
    echo "$ODOOOPS_BASE"
    return
  fi
  if have_image "$OFFICIAL_BASE" || timeout 120 docker pull -q "$OFFICIAL_BASE" >/dev/null 2>&1; then
    echo "$OFFICIAL_BASE"
    return
  fi
  local hash tag
  hash="$(printf '%s\n' "${BASE_PACKAGES[@]}" "$SUITE" "${RECIPE[@]}" | short_hash)"
  tag="odooops-build/python-base:$hash"
  if ! have_image "$tag"; then
    log "$OFFICIAL_BASE cannot be pulled; making a local Debian $SUITE base"
    build_local_base "$tag"
  fi
  echo "$tag"
}

# build/wheels: the locked dependencies plus the build backend, stamped with their inputs.
build_wheels() {
  local py backend inputs
  py="$(host_python)"
  backend="$("$py" -c 'import sys, tomllib
print(*tomllib.load(open(sys.argv[1], "rb"))["build-system"]["requires"], sep="\n")' \
    "$ROOT/pyproject.toml")"
  inputs="$( { cat "$ROOT/requirements.lock"; echo "$backend"; "$py" -VV; } | sha256sum | cut -d' ' -f1)"
  if [[ -f "$WHEELS/.inputs" && "$(cat "$WHEELS/.inputs")" == "$inputs" ]]; then
    return
  fi
  log "building wheels of requirements.lock into build/wheels"
  rm -rf "$WHEELS.tmp"
  mkdir -p "$WHEELS.tmp"
  # Binary wheels are copied as downloaded; an sdist would be built here (same Debian release).
  # pip's chatter (this host's pip.conf lists local indexes) goes to a log, shown on failure.
  # shellcheck disable=SC2086 # $backend: one requirement per line
  if ! { "$py" -m pip wheel -q --no-deps -r "$ROOT/requirements.lock" -w "$WHEELS.tmp" \
      && "$py" -m pip download -q --no-deps --only-binary=:all: -d "$WHEELS.tmp" $backend; } \
      >"$OUT_DIR/wheels.log" 2>&1; then
    tail -n 30 "$OUT_DIR/wheels.log" >&2
    log "building wheels failed (log: $OUT_DIR/wheels.log)"
    return 1
  fi
  echo "$inputs" > "$WHEELS.tmp/.inputs"
  rm -rf "$WHEELS"
  mv "$WHEELS.tmp" "$WHEELS"
}

main() {
  mkdir -p "$OUT_DIR"
  # Concurrent runs (parallel test sessions) wait for each other instead of racing.
  exec 9>"$OUT_DIR/.build-daemon-image.lock"
  flock 9

  local base version revision tag previous current
  base="$(choose_base)"
  if [[ "${ODOOOPS_OFFLINE_WHEELS:-1}" == 1 ]]; then
    build_wheels
  elif [[ -d "$WHEELS" ]]; then
    log "ODOOOPS_OFFLINE_WHEELS=0 but build/wheels exists: the build will use it; remove it first"
  fi

  version="$("$(host_python)" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
  revision="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
  tag="odooops/daemon:$version"
  previous="$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)"

  log "building $tag on $base"
  # --force-rm: a failed step leaves no container behind.
  docker build --force-rm \
    --build-arg "BASE=$base" \
    --build-arg "VERSION=$version" \
    --build-arg "REVISION=$revision" \
    -t "$tag" -f "$ROOT/Dockerfile" "$ROOT" >&2

  # The image this tag replaced, if nothing else uses it (errors mean it is still in use).
  current="$(docker image inspect -f '{{.Id}}' "$tag")"
  if [[ -n "$previous" && "$previous" != "$current" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
  fi
  echo "$tag"
}

main "$@"
