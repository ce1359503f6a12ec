#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly through wait_until
# Interop: `tether prompt` against a real ACP agent built on the official @agentclientprotocol/sdk
# (acp/agent.mjs, SDK pinned in acp/package-lock.json).
#
# usage: acp_prompt_test.sh TETHER_EXE SRC_DIR WORK_DIR
#   SRC_DIR  tests/interop in the source tree (holds acp/)
#   WORK_DIR a scratch directory in the build tree; the SDK and the agent go to WORK_DIR/acp
# Exit 77 (skip) only when node or npm is missing.

TEST_NAME=acp_prompt
set -uo pipefail
if (($# != 3)); then
  echo "usage: $0 TETHER_EXE SRC_DIR WORK_DIR" >&2
  exit 2
fi
TETHER=$(realpath "$1")
SRC=$(realpath "$2")
WORK=$(realpath -m "$3")
# shellcheck source=lib.sh
source "$SRC/lib.sh"

need_node
[[ -x $TETHER ]] || { note "tether binary '$TETHER' is missing"; exit 1; }
command -v jq >/dev/null 2>&1 || { note "FAIL: jq is required (scripts/deps installs it)"; exit 1; }
setup_tmp

npm_prepare "$SRC/acp" "$WORK/acp" agent.mjs smoke-client.mjs serve-client.mjs || { note "FAIL: npm ci in $WORK/acp failed"; exit 1; }
AGENT=$WORK/acp/agent.mjs
note "@agentclientprotocol/sdk $(node -p 'require(process.argv[1]).version' "$WORK/acp/node_modules/@agentclientprotocol/sdk/package.json")"

# The session cwd: --allow-fs serves only files inside it.
mkdir -p "$TMP/cwd"
CWD=$(realpath "$TMP/cwd")
LOG=$TMP/agent.log
export TETHER_INTEROP_LOG=$LOG
BRIDGE=(node "$AGENT")
STREAMED="Streaming reply: 1 2 3 4 5 6 7 8 9 10."

# Every agent logs {"pid":…,"event":"start"}: all of them must be gone once tether has exited.
agents_gone() {
  local pid
  for pid in $(jq -r 'select(.event == "start") | .pid' "$LOG" 2>/dev/null); do
    pid_gone "$pid" || return 1
  done
}
check_leftovers() {
  if ! wait_until 5 agents_gone; then
    fail "$1: agent processes left behind after tether exited" "$LOG"
    local pid
    for pid in $(jq -r 'select(.event == "start") | .pid' "$LOG" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
  fi
}
# logged FILTER: some line of the agent log satisfies the jq FILTER.
logged() { jq -e -s "any(.[]; $1)" "$LOG" >/dev/null 2>&1; }

# run NAME EXPECTED_RC [TETHER PROMPT ARGS...]: run `tether prompt ARGS -- node agent.mjs` in CWD
# with a fresh agent log; stdout in $TMP/NAME.out, stderr in $TMP/NAME.err. 0 when rc matched.
run() {
  local name=$1 want=$2
  shift 2
  : >"$LOG"
  (cd "$CWD" && timeout -k 5 60 "$TETHER" prompt "$@" -- "${BRIDGE[@]}" </dev/null >"$TMP/$name.out" 2>"$TMP/$name.err")
  local rc=$?
  if ((rc != want)); then
    fail "$name: exit status $rc, expected $want" "$TMP/$name.out" "$TMP/$name.err" "$LOG"
    return 1
  fi
}
# text_is NAME EXPECTED: stdout is exactly EXPECTED plus one newline.
text_is() {
  if [[ $(cat "$TMP/$1.out"; echo x) != "$2"$'\n'x ]]; then
    fail "$1: stdout is not exactly '$2' + newline" "$TMP/$1.out" "$TMP/$1.err"
    return 1
  fi
}

# 0. The agent itself works with the SDK's own client: a failure here is not tether's.
if ! (cd "$WORK/acp" && TETHER_INTEROP_LOG=$TMP/smoke.log timeout -k 5 60 node smoke-client.mjs >"$TMP/smoke.out" 2>&1); then
  fail "the SDK's own client cannot drive agent.mjs (agent or SDK problem, not tether's)" "$TMP/smoke.out"
  finish
fi
pass "agent.mjs works with the SDK client"

# 1. Streaming: every chunk, in order, written once when the turn completes (stdout is no TTY).
before=$FAILURES
run stream 0 "say hello" && text_is stream "$STREAMED"
logged '.event == "prompt" and .text == "say hello"' || fail "stream: the agent did not get the prompt text" "$LOG"
logged '.event == "session/new" and .cwd == "'"$CWD"'"' || fail "stream: session/new cwd is not the working directory" "$LOG"
check_leftovers stream
((FAILURES == before)) && pass "streamed text complete and in order"

# 1b. The same prompt from stdin, and as --json.
before=$FAILURES
: >"$LOG"
(cd "$CWD" && echo "say hello" | timeout -k 5 60 "$TETHER" prompt -- "${BRIDGE[@]}" >"$TMP/stdin.out" 2>"$TMP/stdin.err")
rc=$?
((rc == 0)) || fail "stdin: exit status $rc, expected 0" "$TMP/stdin.out" "$TMP/stdin.err"
((rc == 0)) && text_is stdin "$STREAMED"
check_leftovers stdin
if run json 0 --json "say hello"; then
  jq -e -s --arg t "$STREAMED" 'length == 1 and .[0].ok == true and .[0].text == $t and .[0].stopReason == "end_turn"
      and (.[0].sessionId | startswith("interop-session-"))' "$TMP/json.out" >/dev/null ||
    fail "json: not one object {ok:true,text,stopReason:end_turn,sessionId}" "$TMP/json.out" "$TMP/json.err"
fi
check_leftovers json
((FAILURES == before)) && pass "prompt from stdin and --json"

# 2. Permission requests answered by policy.
before=$FAILURES
run perm_allow 0 --permission allow "ask permission please" && text_is perm_allow "$STREAMED"$'\n\n'"permission: allowed."
logged '.event == "permission" and .outcome.outcome == "selected" and .outcome.optionId == "allow"' ||
  fail "perm_allow: the agent did not get optionId allow" "$LOG"
check_leftovers perm_allow
run perm_deny 0 --permission deny "ask permission please" && text_is perm_deny "$STREAMED"$'\n\n'"permission: rejected."
logged '.event == "permission" and .outcome.outcome == "selected" and .outcome.optionId == "reject"' ||
  fail "perm_deny: the agent did not get optionId reject" "$LOG"
check_leftovers perm_deny
run perm_default 0 "ask permission please" && text_is perm_default "$STREAMED"$'\n\n'"permission: rejected."
check_leftovers perm_default
((FAILURES == before)) && pass "permission: allow, deny, and the default (deny) outside talk"

# 3. fs/read_text_file: served with --allow-fs inside the cwd, not advertised without it, refused
#    outside the cwd.
before=$FAILURES
CONTENT="interop file content $$ $RANDOM"
printf '%s' "$CONTENT" >"$CWD/note.txt"
run fs 0 --allow-fs "read $CWD/note.txt" && text_is fs "$STREAMED file content: $CONTENT"
logged '.event == "initialize" and .clientCapabilities.fs.readTextFile == true' ||
  fail "fs: --allow-fs did not advertise fs.readTextFile" "$LOG"
check_leftovers fs
run nofs 0 "read $CWD/note.txt" && text_is nofs "$STREAMED fs: not advertised."
check_leftovers nofs
printf 'secret outside the cwd' >"$TMP/outside.txt"
if run fs_outside 0 --allow-fs "read $TMP/outside.txt"; then
  if grep -q 'secret outside' "$TMP/fs_outside.out"; then
    fail "fs_outside: a file outside the session cwd was served" "$TMP/fs_outside.out"
  fi
  grep -q "^$STREAMED fs error: " "$TMP/fs_outside.out" || fail "fs_outside: expected an fs error" "$TMP/fs_outside.out"
fi
check_leftovers fs_outside
ln -s "$TMP/outside.txt" "$CWD/escape.txt"
if run fs_symlink 0 --allow-fs "read $CWD/escape.txt"; then
  if grep -q 'secret outside' "$TMP/fs_symlink.out"; then
    fail "fs_symlink: a symlink inside the cwd served a file outside it" "$TMP/fs_symlink.out"
  fi
  grep -q "^$STREAMED fs error: " "$TMP/fs_symlink.out" || fail "fs_symlink: expected an fs error" "$TMP/fs_symlink.out"
fi
check_leftovers fs_symlink
((FAILURES == before)) && pass "fs/read_text_file with --allow-fs (inside cwd), without it, outside cwd, via a symlink"

# 4. Cancel: SIGINT to tether while the agent streams "slow" → session/cancel reaches the agent,
#    the turn ends cancelled, tether exits 130 and leaves no agent behind.
before=$FAILURES
: >"$LOG"
# Background jobs of a non-interactive shell ignore SIGINT: give tether the default disposition.
(cd "$CWD" && exec env --default-signal=INT "$TETHER" prompt "go slow" -- "${BRIDGE[@]}" </dev/null >"$TMP/cancel.out" 2>"$TMP/cancel.err") &
tpid=$!
BG_PIDS+=("$tpid")
if ! wait_until 30 logged '.event == "slow-streaming"'; then
  fail "cancel: the agent never started streaming slowly" "$LOG" "$TMP/cancel.err"
else
  kill -INT "$tpid"
  if ! wait_until 10 pid_gone "$tpid"; then
    fail "cancel: tether still running 10 s after SIGINT" "$LOG" "$TMP/cancel.err"
    kill -KILL "$tpid" 2>/dev/null
  fi
fi
wait "$tpid"
rc=$?
BG_PIDS=()
((rc == 130)) || fail "cancel: exit status $rc, expected 130 (SIGINT re-raised)" "$TMP/cancel.out" "$TMP/cancel.err" "$LOG"
logged '.event == "cancel" and .inTurn == true' || fail "cancel: the agent did not receive session/cancel during the turn" "$LOG"
logged '.event == "turn-end" and .stopReason == "cancelled"' || fail "cancel: the agent did not end the turn as cancelled" "$LOG"
check_leftovers cancel
((FAILURES == before)) && pass "SIGINT mid-turn: session/cancel sent, exit 130"

# 4b. tether serve in front of the SDK agent: the SDK's own client attaches through the socket,
# and so does `tether prompt --connect`.
before=$FAILURES
: >"$LOG"
SOCK=$TMP/serve.sock
(cd "$CWD" && exec "$TETHER" serve --socket "$SOCK" -- "${BRIDGE[@]}" </dev/null >"$TMP/serve.out" 2>"$TMP/serve.err") &
spid=$!
BG_PIDS+=("$spid")
serve_ready() { grep -q "listening on" "$TMP/serve.err" 2>/dev/null; }
if ! wait_until 30 serve_ready; then
  fail "serve: the server did not come up" "$TMP/serve.err"
else
  (cd "$WORK/acp" && timeout -k 5 60 node serve-client.mjs "$SOCK" "$CWD" >"$TMP/serve-client.out" 2>&1) ||
    fail "serve: the SDK client through tether serve" "$TMP/serve-client.out" "$TMP/serve.err" "$LOG"
  (cd "$CWD" && timeout -k 5 60 "$TETHER" prompt --connect="$SOCK" "say hello" >"$TMP/connect.out" 2>"$TMP/connect.err")
  rc=$?
  ((rc == 0)) || fail "serve: prompt --connect exit status $rc, expected 0" "$TMP/connect.out" "$TMP/connect.err"
  [[ $(cat "$TMP/connect.out") == "$STREAMED" ]] || fail "serve: prompt --connect printed something else" "$TMP/connect.out"
  timeout -k 5 30 "$TETHER" serve --stop --socket "$SOCK" >/dev/null 2>"$TMP/stop.err" || fail "serve: --stop failed" "$TMP/stop.err"
fi
wait "$spid"
BG_PIDS=()
check_leftovers serve
((FAILURES == before)) && pass "tether serve: the SDK's client and prompt --connect attach through the socket"

# 5. --timeout: the turn is cancelled on the agent (session/cancel) and tether exits 75.
before=$FAILURES
run timeout 75 --timeout 1 "go slow"
logged '.event == "cancel" and .inTurn == true' || fail "timeout: the agent did not receive session/cancel" "$LOG"
logged '.event == "turn-end" and .stopReason == "cancelled"' || fail "timeout: the agent did not end the turn as cancelled" "$LOG"
check_leftovers timeout
((FAILURES == before)) && pass "--timeout mid-turn: session/cancel sent, exit 75"

finish
