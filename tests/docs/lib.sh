# shellcheck shell=bash disable=SC2034  # BLOCK_RC and BLOCK_LEFT are read by the tests that source it
# Shared by the docs suite's tests (sourced): finding the fenced blocks of a Markdown file, and the
# scratch directory a block runs in. A block is what a reader would paste into a shell, so it runs
# as written: only its directory and its environment are prepared.
#
# The convention (docs/development.md says it for writers):
#   ```sh                          a block that is run
#   ```text / console / json ...   never run
#   <!-- docs-test: skip REASON --> on the line before a ```sh fence: not run (a terminal, root,
#                                   the network or a real agent is needed)
#   <!-- docs-test: recipe NAME --> on the line before a ```sh fence: run by recipes_test.sh only

# list_blocks FILE...: one line per ```sh block, "FILE<TAB>LINE<TAB>KIND<TAB>ARG", KIND being run,
# skip or recipe and ARG the reason or the recipe's name; each block's body is written to
# "$BLOCKS_DIR/FILE:LINE.sh" (FILE with its slashes turned into '_').
list_blocks() {
  local f
  for f in "$@"; do
    awk -v file="$f" -v dir="$BLOCKS_DIR" '
      function flush_name(l) { n = file; gsub(/\//, "_", n); return dir "/" n ":" l ".sh" }
      in_block && /^```[[:space:]]*$/ { in_block = 0; close(out); prev = ""; next }
      in_block { if (run) print > out; next }
      /^```/ {
        in_block = 1
        run = ($0 ~ /^```sh[[:space:]]*$/)
        if (run) {
          kind = "run"; arg = ""
          if (match(prev, /<!-- docs-test: (skip|recipe) [^>]*-->/)) {
            m = substr(prev, RSTART + 16, RLENGTH - 19); sub(/ +$/, "", m)
            kind = substr(m, 1, index(m, " ") - 1); arg = substr(m, index(m, " ") + 1)
          }
          out = flush_name(NR)
          printf "" > out
          printf "%s\t%d\t%s\t%s\n", file, NR, kind, arg
        }
        next
      }
      { prev = $0 }
    ' "$f"
  done
}

# prepare_dir DIR: DIR/work (the block's working directory, with the inputs a reader of the docs is
# assumed to have) and DIR/env (private runtime, state, config and home directories).
prepare_dir() {
  local d=$1
  mkdir -p "$d/work" "$d/env/run" "$d/env/state" "$d/env/config" "$d/env/home"
  chmod 700 "$d/env/run"
  printf '%s\n' '{"id":"q1","prompt":"hello","lang":"en"}' '{"id":2,"prompt":"please edit the file"}' \
    'a plain line is a prompt too' >"$d/work/prompts.jsonl"
  # "Your agent": a stand-in that records that it ran, then becomes the demo agent.
  cat >"$d/work/my_agent.py" <<'EOF'
import os, sys
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "my_agent.ran"), "a") as f:
    f.write("%d\n" % os.getpid())
os.execvp("tether", ["tether", "demo-agent"] + sys.argv[1:])
EOF
}

# in_env DIR CMD...: CMD in DIR/work with tether first on PATH and the private directories of DIR.
in_env() {
  local d=$1
  shift
  (cd "$d/work" && exec env -u TETHER_BRIDGE -u TETHER_DEMO_STATE_DIR -u TETHER_HISTORY -u SLURM_ARRAY_TASK_ID \
    PATH="$TETHER_DIR:$PATH" XDG_RUNTIME_DIR="$d/env/run" XDG_STATE_HOME="$d/env/state" \
    XDG_CONFIG_HOME="$d/env/config" HOME="$d/env/home" NO_COLOR=1 "$@")
}

# run_block DIR SCRIPT SECS [VAR=VALUE...]: the block in its own process group under a timeout;
# whatever it left running is killed. Sets BLOCK_RC, and BLOCK_LEFT=1 when something was left.
run_block() {
  local d=$1 script=$2 secs=$3
  shift 3
  in_env "$d" env "$@" timeout -k 5 "$secs" bash -eo pipefail "$script" >"$d/stdout" 2>"$d/stderr" &
  local pid=$!
  wait "$pid"
  BLOCK_RC=$?
  BLOCK_LEFT=0
  # timeout(1) leads its own process group; the block's background jobs are in it. One that has
  # just exited may still be a zombie on its way to being reaped: give the group 2 s to go.
  local deadline=$((SECONDS + 2))
  while kill -0 -- "-$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      BLOCK_LEFT=1
      kill -KILL -- "-$pid" 2>/dev/null
      break
    fi
    sleep 0.05  # polling the condition, with the deadline above
  done
}
