# shellcheck shell=bash
# Shared by the set-up scripts (sourced, not run): `quiet CMD...` runs a command with its output
# in $LOG only, and a failure shows the log's last lines. The caller sets LOG and defines
# log() with its own prefix before calling it.
quiet() {
  printf '\n$ %s\n' "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    log "failed: $*; the last lines of $LOG:"
    tail -n 25 "$LOG" | sed 's/^/  | /' >&2
    exit 1
  fi
}
