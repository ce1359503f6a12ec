# shellcheck shell=bash disable=SC2317
# Shared helpers for the interop test scripts (sourced, not run).
#
# A script sets TEST_NAME, sources this file, then calls need_node, setup_tmp, npm_prepare, fail/pass and finish.
# Exit codes follow meson: 0 pass, 77 skip, anything else fail.

SKIP=77
FAILURES=0
TMP=""
BG_PIDS=()

note() { printf '%s: %s\n' "$TEST_NAME" "$*" >&2; }

# fail MESSAGE [FILE...]: record a failure and show the files that explain it.
fail() {
  local msg=$1
  shift
  FAILURES=$((FAILURES + 1))
  printf '%s: FAIL: %s\n' "$TEST_NAME" "$msg" >&2
  local f
  for f in "$@"; do
    if [[ -s $f ]]; then
      printf -- '--- %s\n' "$(basename "$f")" >&2
      head -c 4000 "$f" >&2
      printf -- '\n---\n' >&2
    fi
  done
}

pass() { printf '%s: ok: %s\n' "$TEST_NAME" "$*" >&2; }

cleanup() {
  local pid
  for pid in "${BG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null
  done
  if [[ -n $TMP && -d $TMP ]]; then
    rm -rf -- "$TMP"
  fi
}

setup_tmp() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-interop.XXXXXX") || exit 1
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# Skip (77) only when node or npm is missing; everything else that goes wrong is a failure.
need_node() {
  local tool
  for tool in node npm; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      note "SKIP: '$tool' is not installed (install Node.js >= 20 and npm to run the interop tests)"
      exit $SKIP
    fi
  done
}

# npm_prepare SRC_DIR WORK_DIR [EXTRA_FILE...]: copy package.json, package-lock.json (written
# without registry URLs: .npmrc sets omit-lockfile-registry-resolved) and the extra
# files from SRC_DIR into WORK_DIR and install the pinned packages there with `npm ci` (or
# `npm install` from the lockfile when NPM_PREPARE_INSTALL=1: for a lockfile `npm ci` refuses), unless
# WORK_DIR already holds an install made from the same lockfile. Installing into the build
# directory keeps the source tree clean and lets several build directories test side by side.
npm_prepare() {
  local src=$1 work=$2
  shift 2
  mkdir -p "$work" || return 1
  local f
  for f in "$@"; do
    cp -f "$src/$f" "$work/$f" || return 1
  done
  (
    # Serialize concurrent runs on the same WORK_DIR when flock(1) is available.
    if command -v flock >/dev/null 2>&1; then
      exec 9>"$work/.npm-prepare.lock"
      flock -w 300 9 || exit 1
    fi
    if [[ -d $work/node_modules ]] && cmp -s "$src/package-lock.json" "$work/.installed-lock.json"; then
      exit 0
    fi
    cp -f "$src/package.json" "$src/package-lock.json" "$work/" || exit 1
    if [[ -f $src/.npmrc ]]; then cp -f "$src/.npmrc" "$work/" || exit 1; fi
    rm -f "$work/.installed-lock.json"
    note "installing pinned npm packages into $work"
    local how=(ci)
    [[ ${NPM_PREPARE_INSTALL:-0} == 1 ]] && how=(install --no-save)
    (cd "$work" && timeout 150 npm "${how[@]}" --no-audit --no-fund --loglevel=error) >&2 || exit 1
    cp -f "$src/package-lock.json" "$work/.installed-lock.json"
  )
}

# wait_until DEADLINE_SECS COMMAND...: poll COMMAND until it succeeds; 1 when the deadline expires.
wait_until() {
  local limit=$1
  shift
  local end=$((SECONDS + limit))
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.05
  done
}

# pid_gone PID: the process has exited (and been reaped or is a zombie of someone else).
pid_gone() {
  ! kill -0 "$1" 2>/dev/null && return 0
  [[ $(ps -o stat= -p "$1" 2>/dev/null) == Z* ]]
}

finish() {
  if ((FAILURES > 0)); then
    note "$FAILURES check(s) failed"
    exit 1
  fi
  note "all checks passed"
  exit 0
}
