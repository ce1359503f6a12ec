# shellcheck shell=bash
# Shared helpers for the scripts in scripts/: sourced, never run.
#
# They know where the repository is, configure and build a build directory quietly (tool output
# appears only when a step fails, and then on stderr), run one `meson test` pass and count its
# results. They do not decide what a script prints last or how it exits: each script does that.
#
# Streams: stdout carries meson test's own report and the summary lines; everything else from
# these helpers goes to stderr.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPTS=$ROOT/scripts
PROG=${0##*/}

# Build directories are ${BUILD_PREFIX}NAME: build-test/, build-release/, build-asan/ and build-tsan/
# in the repository by default. TETHER_BUILD_PREFIX changes that ("build-mine-", "/tmp/tether-")
# for a run that must leave the usual ones alone.
BUILD_PREFIX=${TETHER_BUILD_PREFIX:-build-}

# build_dir NAME: the build directory for NAME, absolute.
build_dir() {
  case $BUILD_PREFIX in
    /*) printf "%s%s\n" "$BUILD_PREFIX" "$1" ;;
    *) printf "%s/%s%s\n" "$ROOT" "$BUILD_PREFIX" "$1" ;;
  esac
}

# rel PATH: PATH relative to the repository when inside it, for messages.
rel() { printf "%s\n" "${1#"$ROOT"/}"; }

# Name of the lock file each build directory holds while it is configured or built.
LOCK_NAME=.scripts.lock

say() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() {
  say "$@"
  exit 1
}

# Installs whatever is missing; silent when nothing is.
run_deps() { bash "$SCRIPTS/deps" --quiet; }

# format_line PASSED FAILED SKIPPED [LABEL]: the closing line CI reads, e.g. "3 passed, 0 failed",
# with ", N skipped" only when some were skipped and "LABEL: " in front when a label is given.
# duration SECS: "12m05s" (or "45s").
duration() {
  if (($1 >= 60)); then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi
}

format_line() {
  local line="$1 passed, $2 failed"
  if (($3 > 0)); then line+=", $3 skipped"; fi
  if [[ -n ${4:-} ]]; then line="$4: $line"; fi
  printf '%s\n' "$line"
}

# with_lock DIR CMD...: runs CMD while holding an exclusive lock on build directory DIR (created if
# needed), so two scripts never run meson setup or ninja in the same directory at once. The lock is
# released before the caller goes on, so a test that leaves a process behind can never hold it.
with_lock() {
  local dir=$1 fd rc=0
  shift
  mkdir -p "$dir"
  exec {fd}>"$dir/$LOCK_NAME"
  if ! flock -n "$fd"; then
    say "waiting for another build in $(rel "$dir")/"
    flock "$fd"
  fi
  "$@" || rc=$?
  exec {fd}>&-
  return "$rc"
}

# configure DIR SETUP_ARGS...: `meson setup` DIR (with SETUP_CXX as the compiler when set) unless
# it is already configured that way. Call under with_lock. A directory without build.ninja is a
# setup that failed or was interrupted, and one set up with other arguments or another compiler
# (the stamp file .scripts-setup says which) is stale: either is emptied and set up afresh.
configure() {
  local dir=$1 log stamp want
  shift
  stamp=$dir/.scripts-setup
  want="CXX=${SETUP_CXX:-} $*"
  if [[ -f $dir/build.ninja ]]; then
    if [[ -f $stamp ]]; then
      [[ $(<"$stamp") == "$want" ]] && return 0
      say "$(rel "$dir")/ was set up with other arguments ($(<"$stamp")): setting it up afresh"
    elif [[ -z ${SETUP_CXX:-} ]] || grep -qF "$SETUP_CXX " "$dir/compile_commands.json" 2>/dev/null; then
      return 0 # set up by hand or by an older script, with the right compiler: kept as is
    else
      say "$(rel "$dir")/ was set up with another compiler than $SETUP_CXX: setting it up afresh"
    fi
  fi
  find "$dir" -mindepth 1 -maxdepth 1 ! -name "$LOCK_NAME" -exec rm -rf -- {} +
  log=$(mktemp)
  if ! env ${SETUP_CXX:+CXX="$SETUP_CXX"} meson setup "$@" "$dir" "$ROOT" </dev/null >"$log" 2>&1; then
    say "meson setup $(rel "$dir") failed:"
    cat "$log" >&2
    rm -f -- "$log"
    return 1
  fi
  rm -f -- "$log"
  printf '%s\n' "$want" >"$stamp"
}

# build DIR [TARGET...]: ninja, silent when it succeeds. Says "building DIR/" first when there is
# work to do, so a long first build is not mistaken for a hang; prints nothing when up to date.
# On failure it shows ninja's output without the progress lines.
build() {
  local dir=$1 log out
  shift
  out=$(ninja -C "$dir" -n "$@" </dev/null 2>&1) || true
  [[ $out == *"ninja: no work to do."* ]] && return 0
  say "building $(rel "$dir")/"
  mkdir -p "$dir/meson-logs"
  log=$dir/meson-logs/scripts-build.log
  if ! ninja -C "$dir" "$@" </dev/null >"$log" 2>&1; then
    say "build in $(rel "$dir")/ failed:"
    # Meson asks the compiler for colours; keep them for a terminal only (not in CI logs).
    if [[ -t 2 ]]; then
      grep -vE '^\[[0-9]+/[0-9]+\] |^ninja: Entering directory' "$log" >&2 || cat "$log" >&2
    else
      sed -E 's/\x1b\[[0-9;]*[mK]//g' "$log" | grep -vE '^\[[0-9]+/[0-9]+\] |^ninja: Entering directory' >&2 || true
    fi
    return 1
  fi
}

# prepare DIR: configure (with SETUP_ARGS) and build DIR (STAGE_TARGETS, else all) under its lock.
prepare() { with_lock "$1" _prepare_locked "$1"; }
_prepare_locked() { configure "$1" "${SETUP_ARGS[@]}" && build "$1" ${STAGE_TARGETS[@]+"${STAGE_TARGETS[@]}"}; }

# Debug information in the test and sanitizer builds: line tables only (-g1; clang: line tables
# too). Backtraces, sanitizer reports and gdb still name file:line and function; local variables
# are not described. It compiles this code base about a quarter faster than -g (one heavy test
# file: 12.0 s against 16.4 s), which CI's two cores feel in every pass. A build of your own with
# full -g: `meson setup build --buildtype=debugoptimized`.
DEBUG_INFO_ARGS=(-Dcpp_args=-g1)

# What the next `stage` uses. Callers set these before calling it.
SETUP_ARGS=()   # meson setup options for the build directory
SETUP_CXX=""    # the C++ compiler for a new build directory (empty: meson's choice, $CXX or c++)
TEST_ENV=()     # NAME=VALUE pairs for meson test (and so for every test)
TEST_WRAPPER=() # command that meson test itself runs under, e.g. (setarch x86_64 -R)
STAGE_TARGETS=() # ninja targets to build (none: all); the tests run must need no others

# Results of the last stage, and the running totals of all stages.
STAGE_PASSED=0 STAGE_FAILED=0 STAGE_SKIPPED=0
TOTAL_PASSED=0 TOTAL_FAILED=0 TOTAL_SKIPPED=0

# stage DIR [MESON_TEST_ARGS...]: configure and build DIR, run `meson test` in it, count the
# results from its testlog.json into STAGE_* and add them to TOTAL_*. Prints nothing of its own on
# stdout. A stage that could not run its tests (setup or build failed, meson test stopped before
# writing a log) counts as one failed test, so the closing line never looks green when it is not.
stage() {
  local dir=$1 log rc=0 counts t0=$SECONDS t1
  shift
  log=$dir/meson-logs/testlog.json
  STAGE_PASSED=0 STAGE_FAILED=0 STAGE_SKIPPED=0
  STAGE_TIME=""
  if ! prepare "$dir"; then
    say "$(rel "$dir")/ could not be built: counted as 1 failed"
    STAGE_FAILED=1
  else
    # A log left by an earlier run must never be counted as this run's.
    rm -f -- "$log"
    t1=$SECONDS
    env ${TEST_ENV[@]+"${TEST_ENV[@]}"} ${TEST_WRAPPER[@]+"${TEST_WRAPPER[@]}"} \
      meson test -C "$dir" --no-rebuild --print-errorlogs "$@" </dev/null || rc=$?
    if [[ -f $log ]]; then
      if counts=$(bash "$SCRIPTS/testlog-summary" --counts "$log"); then
        read -r STAGE_PASSED STAGE_FAILED STAGE_SKIPPED <<<"$counts"
      else
        say "$(rel "$log") could not be read: counted as 1 failed"
        STAGE_FAILED=1
      fi
      if ((rc != 0 && STAGE_FAILED == 0)); then
        say "meson test in $(rel "$dir")/ exited $rc with no failed test in its log: counted as 1 failed"
        STAGE_FAILED=1
      fi
    elif ((rc != 0)); then
      say "meson test in $(rel "$dir")/ exited $rc before running any test: counted as 1 failed"
      STAGE_FAILED=1
    else
      say "meson test in $(rel "$dir")/ ran no test"
    fi
    STAGE_TIME="$(duration $((SECONDS - t0))): build $(duration $((t1 - t0))), tests $(duration $((SECONDS - t1)))"
  fi
  TOTAL_PASSED=$((TOTAL_PASSED + STAGE_PASSED))
  TOTAL_FAILED=$((TOTAL_FAILED + STAGE_FAILED))
  TOTAL_SKIPPED=$((TOTAL_SKIPPED + STAGE_SKIPPED))
}

# exit_for_totals: the exit status for TOTAL_*: 1 when a test failed or when none ran to an end
# (all skipped counts as none), else 0.
exit_for_totals() {
  if ((TOTAL_FAILED > 0)); then return 1; fi
  if ((TOTAL_PASSED == 0)); then
    say "no test ran"
    return 1
  fi
  return 0
}

# sanitizer_setup KIND: sets SETUP_ARGS, TEST_ENV and TEST_WRAPPER for KIND (asan or tsan), after
# checking with a small probe program that the sanitizer runs on this machine. Options already in
# the caller's ASAN_OPTIONS, UBSAN_OPTIONS or TSAN_OPTIONS come last, so they win (a suppressions
# file, say). Returns non-zero when the sanitizer cannot run here.
sanitizer_setup() {
  local kind=$1 flags=()
  case $kind in
    asan)
      # clang when it can be had: it compiles this code base under ASan+UBSan three times faster
      # than g++ (one heavy file: 12 s against 38 s), and it checks the thread-safety annotations
      # (-Wthread-safety, see meson.build), so this pass builds with warnings as errors. g++ (no
      # -Werror: it warns about things only sanitizers care about) when clang cannot be installed.
      SETUP_CXX=""
      # shellcheck disable=SC2054 # the commas belong to the option values
      # -O1, ASan's usual level: its build is the longest of CI (11 min at -O2 on two cores).
      SETUP_ARGS=(-Ddebug=true -Doptimization=1 --wrap-mode=nodownload "${DEBUG_INFO_ARGS[@]}"
        -Db_sanitize=address,undefined -Db_lundef=false)
      # The libFuzzer targets (tests/fuzz, -Dfuzz=true) are built here too, so scripts/fuzz runs
      # them without a clang build of its own: the ASan+UBSan libraries are what they need, plus
      # coverage instrumentation (-fsanitize=fuzzer-no-link), which the tests do not notice. One
      # build instead of two saves CI about three minutes on two cores.
      if ensure_clang -fsanitize=fuzzer,address,undefined; then
        SETUP_CXX=clang++
        SETUP_ARGS+=(-Dwerror=true -Dfuzz=true)
      elif ensure_clang -fsanitize=address,undefined; then
        SETUP_CXX=clang++
        SETUP_ARGS+=(-Dwerror=true)
        say "asan: clang++ cannot link libFuzzer here; the fuzz targets are not built"
      else
        say "asan: clang++ cannot be had here; building with g++, and the thread-safety annotations go unchecked"
      fi
      TEST_ENV=("ASAN_OPTIONS=detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}")
      # shellcheck disable=SC2054
      flags=(-fsanitize=address,undefined)
      ;;
    tsan)
      # clang as for asan (faster to build, warnings as errors; g++ warns -Wtsan about
      # atomic_thread_fence), g++ without -Werror when clang cannot be had.
      SETUP_CXX=""
      SETUP_ARGS=(--buildtype=debugoptimized --wrap-mode=nodownload "${DEBUG_INFO_ARGS[@]}"
        -Db_sanitize=thread -Db_lundef=false)
      if ensure_clang -fsanitize=thread; then
        SETUP_CXX=clang++
        SETUP_ARGS+=(-Dwerror=true)
      else
        say "tsan: clang++ cannot be had here; building with g++"
      fi
      TEST_ENV=("TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1${TSAN_OPTIONS:+:$TSAN_OPTIONS}")
      flags=(-fsanitize=thread)
      ;;
    *)
      say "unknown sanitizer '$kind' (asan or tsan)"
      return 1
      ;;
  esac
  TEST_WRAPPER=()
  _probe_sanitizer "$kind" "${flags[@]}"
}

# _probe_sanitizer KIND FLAGS...: builds and runs a two-thread program with FLAGS. When it fails
# only because of the address space layout (TSan and ASan in GCC 12 abort with "unexpected memory
# mapping" or a shadow-memory clash on kernels with more mmap randomisation bits), the tests run
# under `setarch -R` (ASLR off; the personality is inherited by every process they start). When
# LeakSanitizer itself cannot work here (no ptrace), leak detection is turned off, loudly.
_probe_sanitizer() {
  local kind=$1 tmp leak_note
  shift
  tmp=$(mktemp -d)
  cat >"$tmp/probe.cpp" <<'CPP'
#include <cstdlib>
#include <thread>
int main() {
  int x = 0;
  std::thread t([&] { x = 1; });
  t.join();
  return x == 1 ? EXIT_SUCCESS : EXIT_FAILURE;
}
CPP
  if ! "${SETUP_CXX:-${CXX:-c++}}" -std=c++20 -pthread -g "$@" "$tmp/probe.cpp" -o "$tmp/probe" >"$tmp/cc.log" 2>&1; then
    say "$kind: cannot compile with $*:"
    cat "$tmp/cc.log" >&2
    rm -rf -- "$tmp"
    return 1
  fi
  if ! _probe_run "$tmp"; then
    if [[ $kind == asan ]] && leak_note=$(grep -m1 'LeakSanitizer' "$tmp/run.log"); then
      TEST_ENV[0]+=:detect_leaks=0
      rm -f -- "$tmp/first.log"
      if ! _probe_run "$tmp"; then
        _probe_failed "$kind" "$tmp"
        return 1
      fi
      say "$kind: LeakSanitizer cannot work here ($leak_note): leak detection is off"
    else
      _probe_failed "$kind" "$tmp"
      return 1
    fi
  fi
  if ((${#TEST_WRAPPER[@]} > 0)); then
    say "$kind: running the tests under '${TEST_WRAPPER[*]}' (ASLR off); without it the runtime fails here with: $(grep -m1 -E 'FATAL|ERROR|unexpected memory mapping|Shadow memory' "$tmp/first.log" || head -n1 "$tmp/first.log")"
  fi
  rm -rf -- "$tmp"
}

_probe_failed() {
  say "$1: a sanitized program cannot run on this machine:"
  cat "$2/run.log" >&2
  rm -rf -- "$2"
}

# _probe_run TMP: runs TMP/probe as is, then with ASLR off; sets TEST_WRAPPER to what worked.
# TMP/first.log keeps the first failure, TMP/run.log the last one.
_probe_run() {
  local tmp=$1
  TEST_WRAPPER=()
  # Each run sits in a subshell that waits for it, so a probe killed by a signal (abort_on_error)
  # is reported in the log, not as bash's "Aborted" on the terminal.
  if (env "${TEST_ENV[@]}" "$tmp/probe"; exit) </dev/null >"$tmp/run.log" 2>&1; then return 0; fi
  [[ -f $tmp/first.log ]] || cp "$tmp/run.log" "$tmp/first.log"
  if (env "${TEST_ENV[@]}" setarch "$(uname -m)" -R "$tmp/probe"; exit) </dev/null >>"$tmp/run.log" 2>&1; then
    TEST_WRAPPER=(setarch "$(uname -m)" -R)
    return 0
  fi
  return 1
}

# ensure_clang FLAGS...: makes sure clang++ is on PATH and can link a program with FLAGS (e.g.
# -fsanitize=fuzzer,address,undefined); installs clang and its compiler-rt (the sanitizer and
# libFuzzer runtimes, for clang's own major version) with apt-get when it cannot, as scripts/deps
# does for the rest. Returns non-zero, with the reason on stderr, when it still cannot.
ensure_clang() {
  _clang_links "$@" && return 0
  _install_clang || return 1
  _clang_links "$@" && return 0
  say "clang++ still cannot link with $*: $CLANG_PROBE_LOG"
  return 1
}

_clang_links() {
  local tmp rc=0
  command -v clang++ >/dev/null 2>&1 || { CLANG_PROBE_LOG="clang++ is not installed"; return 1; }
  tmp=$(mktemp -d)
  if [[ " $* " == *fuzzer* ]]; then
    printf '%s\n' '#include <cstddef>' '#include <cstdint>' \
      'extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t*, std::size_t) { return 0; }' >"$tmp/p.cpp"
  else
    printf '%s\n' 'int main() { return 0; }' >"$tmp/p.cpp"
  fi
  clang++ "$@" "$tmp/p.cpp" -o "$tmp/p" >"$tmp/log" 2>&1 || rc=$?
  ((rc == 0)) || CLANG_PROBE_LOG=$(tail -n 5 "$tmp/log")
  rm -rf -- "$tmp"
  return "$rc"
}

_install_clang() {
  local sudo=() major pkgs log
  if ((EUID != 0)); then
    command -v sudo >/dev/null 2>&1 || { say "clang++ is missing; run as root (or install sudo) to install it"; return 1; }
    sudo=(sudo -n)
  fi
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=300)
  log=$(mktemp)
  ${sudo[@]+"${sudo[@]}"} "${apt[@]}" update </dev/null >"$log" 2>&1 || say "apt-get update failed; trying with the lists already here"
  if ! command -v clang++ >/dev/null 2>&1; then
    if ! ${sudo[@]+"${sudo[@]}"} "${apt[@]}" install --no-install-recommends clang </dev/null >>"$log" 2>&1; then
      tail -n 20 "$log" >&2
      rm -f -- "$log"
      say "apt-get install clang failed"
      return 1
    fi
  fi
  major=$(clang++ -dumpversion | cut -d. -f1)
  pkgs=("libclang-rt-$major-dev")
  apt-cache show "${pkgs[0]}" >/dev/null 2>&1 || pkgs=("libclang-common-$major-dev")
  if ! ${sudo[@]+"${sudo[@]}"} "${apt[@]}" install --no-install-recommends "${pkgs[@]}" </dev/null >>"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -f -- "$log"
    say "apt-get install ${pkgs[*]} failed"
    return 1
  fi
  rm -f -- "$log"
  say "installed clang and ${pkgs[*]}"
}
