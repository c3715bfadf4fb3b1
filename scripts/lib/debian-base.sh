# shellcheck shell=bash disable=SC2034  # sourced: the variables are the callers'
# Shared by scripts/build-images.sh and scripts/build-daemon-image.sh (sourced, not run):
# how a Debian base is bootstrapped offline with mmdebstrap, and small image helpers.
# The caller sets SUITE; after sourcing, SOURCES holds this machine's apt source files and
# BASE_RECIPE the mmdebstrap options every base shares (callers append their own hooks).

# The machine's own apt sources (files mmdebstrap accepts as MIRROR arguments), so a base
# comes from wherever this machine's apt is configured to fetch packages.
SOURCES=()
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
  [ -s "$f" ] && SOURCES+=("$f")
done
[ ${#SOURCES[@]} -gt 0 ] || { echo "$(basename "$0"): no apt sources on this machine" >&2; exit 1; }

BASE_RECIPE=(
  --variant=apt
  '--aptopt=APT::Install-Recommends "false"'
  '--dpkgopt=path-exclude=/usr/share/man/*'
  '--dpkgopt=path-exclude=/usr/share/doc/*'
  '--dpkgopt=path-exclude=/usr/share/locale/*'
  '--dpkgopt=path-include=/usr/share/locale/locale.alias'
)

short_hash() { sha256sum | cut -c1-12; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }
