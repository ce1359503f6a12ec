#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly through wait_until
# Interop: tether against real ACP agents from npm (claude-agent-acp, codex-acp, qwen-code, pinned
# in agents/package-lock.json), offline: each agent talks to agents/mock-vendor.mjs, a scripted mock
# of its vendor's model API on 127.0.0.1, and does real turns (tool calls, permission requests, file
# writes, errors; claude also with mcp/'s server-everything through --mcp). The three agents run
# side by side, each its cases one after another; every run has its own scratch HOME and a clean
# environment (env -i).
#
# usage: real_agents_test.sh TETHER_EXE SRC_DIR WORK_DIR
#   SRC_DIR  tests/interop in the source tree (holds agents/)
#   WORK_DIR a scratch directory in the build tree; the agents are installed into WORK_DIR/agents
# Exit 77 (skip) only when node or npm is missing or the npm registry cannot be reached.
# REAL_AGENTS=claude,codex,qwen (the default) picks the agents to run; REAL_AGENTS_KEEP=1 keeps the
# cases' directories (traces, stdout, stderr, the mock's request log).

TEST_NAME=real_agents
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
if [[ ${REAL_AGENTS_KEEP:-0} == 1 ]]; then
  # Keep the cases' directories (traces, outputs) for a look afterwards; still stop what runs.
  trap 'TMP_KEPT=$TMP; TMP=""; cleanup; note "kept $TMP_KEPT"' EXIT
fi
STARTED=$SECONDS
# The auth cases decide what tether may use from its own environment.
unset OPENAI_API_KEY CODEX_API_KEY
# tether reads no user config (a heartbeat set there would put $/ping on the wire); the agents get
# a clean environment of their own (env -i).
export XDG_CONFIG_HOME=$TMP/config

# qwen-code's lockfile entries lack optional packages the registry does not have: `npm ci`
# refuses such a lockfile, `npm install` installs from it as pinned.
if ! NPM_PREPARE_INSTALL=1 npm_prepare "$SRC/agents" "$WORK/agents" mock-vendor.mjs; then
  if ! timeout 30 npm ping >/dev/null 2>&1; then
    note "SKIP: the npm registry cannot be reached ('npm ping' failed), so the agents cannot be installed"
    exit "$SKIP"
  fi
  note "FAIL: installing the agents into $WORK/agents failed"
  exit 1
fi
NM=$WORK/agents/node_modules
# The MCP server given to claude with --mcp: the one mcp_call_test.sh installs (mcp/, pinned).
if ! npm_prepare "$SRC/mcp" "$WORK/mcp"; then
  note "FAIL: installing the MCP server into $WORK/mcp failed"
  exit 1
fi
MCP_PKG=$WORK/mcp/node_modules/@modelcontextprotocol/server-everything
MCP_ENTRY=$MCP_PKG/$(node -p 'require(process.argv[1]).bin["mcp-server-everything"]' "$MCP_PKG/package.json")
for p in @zed-industries/claude-agent-acp @zed-industries/codex-acp @qwen-code/qwen-code; do
  note "$p $(node -p 'require(process.argv[1]).version' "$NM/$p/package.json")"
done

# The mock vendor API, shared by all agents; requests are logged to $VLOG.
VLOG=$TMP/vendor.log
node "$WORK/agents/mock-vendor.mjs" "$TMP/vendor.port" "$VLOG" >"$TMP/vendor.out" 2>&1 &
BG_PIDS+=($!)
if ! wait_until 15 test -s "$TMP/vendor.port"; then
  fail "the mock vendor API did not start" "$TMP/vendor.out"
  finish
fi
PORT=$(<"$TMP/vendor.port")
BASE=http://127.0.0.1:$PORT
CANNED="Mock answer: hello from the mock model."

# ---- agents: command lines and scratch configuration ----

# agent_cmd AGENT DIR [VAR=VALUE...]: set CMD to the agent's command line with DIR as its scratch
# home (DIR/home) and a clean environment plus the VAR=VALUEs.
agent_cmd() {
  local agent=$1 d=$2
  shift 2
  local base=(env -i PATH="$PATH" HOME="$d/home" LANG=C.UTF-8)
  case $agent in
    claude)
      # Root needs IS_SANDBOX=1; without CLAUDE_CODE_MAX_RETRIES=0 a 401 is retried for a minute.
      CMD=("${base[@]}" IS_SANDBOX=1 ANTHROPIC_BASE_URL="$BASE" ANTHROPIC_API_KEY=mock-key
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 DISABLE_AUTOUPDATER=1 DISABLE_TELEMETRY=1
        CLAUDE_CODE_MAX_RETRIES=0 "$@" node "$NM/@zed-industries/claude-agent-acp/dist/index.js") ;;
    codex)
      CMD=("${base[@]}" CODEX_HOME="$d/codex-home" MOCK_API_KEY=mock-key "$@"
        "$NM/@zed-industries/codex-acp-linux-x64/bin/codex-acp") ;;
    qwen)
      CMD=("${base[@]}" "$@" node "$NM/@qwen-code/qwen-code/cli-entry.js" --acp) ;;
  esac
}

# codex_config DIR PROVIDER: mock (a provider of its own, no login needed) or openai (the built-in
# provider, which needs OpenAI auth). untrusted: commands ask permission; the Linux sandbox helper
# does not work in containers, hence danger-full-access.
codex_config() {
  local d=$1 provider=$2
  mkdir -p "$d/codex-home"
  {
    echo 'model = "mock-model"'
    echo 'approval_policy = "untrusted"'
    echo 'sandbox_mode = "danger-full-access"'
    if [[ $provider == openai ]]; then
      echo 'model_provider = "openai"'
      echo "openai_base_url = \"$BASE/v1\""
    else
      echo 'model_provider = "mock"'
      echo '[model_providers.mock]'
      echo 'name = "Mock"'
      echo "base_url = \"$BASE/v1\""
      echo 'wire_api = "responses"'
      echo 'env_key = "MOCK_API_KEY"'
      echo 'requires_openai_auth = false'
    fi
  } >"$d/codex-home/config.toml"
}

# qwen_config DIR [APPROVAL_MODE]: the API key and base URL in settings; qwen starts in its
# automatic mode "auto" unless APPROVAL_MODE says otherwise.
qwen_config() {
  local d=$1 mode=${2:-}
  mkdir -p "$d/home/.qwen"
  jq -n --arg url "$BASE/v1" --arg mode "$mode" '{security: {auth: {selectedType: "openai", apiKey: "mock-key", baseUrl: $url}},
      model: {name: "mock-model"}} + (if $mode == "" then {} else {tools: {approvalMode: $mode}} end)' >"$d/home/.qwen/settings.json"
}

# new_case AGENT NAME: a fresh case directory (home/, cwd/) in CASE; a default configuration.
new_case() {
  AGENT=$1
  CASE=$TMP/$1-$2
  mkdir -p "$CASE/home" "$CASE/cwd"
  case $1 in
    codex) codex_config "$CASE" mock ;;
    qwen) qwen_config "$CASE" default ;;
  esac
}

# ---- running tether and reading its trace ----

# tprompt NAME [TETHER PROMPT ARGS...]: `tether prompt --trace` with CMD as the bridge, in
# $CASE/cwd; stdout, stderr, exit status and the trace's frames go to $CASE.
tprompt() {
  local name=$1
  shift
  local t0
  t0=$(date +%s%N)
  (cd "$CASE/cwd" && exec timeout -k 5 90 "$TETHER" prompt --trace "$CASE/trace" "$@" -- "${CMD[@]}" \
    </dev/null >"$CASE/out" 2>"$CASE/err")
  echo $? >"$CASE/rc"
  echo $((($(date +%s%N) - t0) / 1000000)) >"$CASE/ms"
  frames "$CASE/trace" >"$CASE/frames"
  echo "$AGENT $name" >"$CASE/name"
}

# frames TRACE: the trace's JSON-RPC frames as JSON lines {dir: "out"|"in", msg}.
frames() {
  [[ -f $1 ]] || return 0
  sed -nE 's/^[^ ]+ [^ ]+ -> (.*)$/{"dir":"out","msg":\1}/p; s/^[^ ]+ [^ ]+ <- (.*)$/{"dir":"in","msg":\1}/p' "$1" |
    jq -c -R 'fromjson? // empty'
}

# tq FILTER [FRAMES]: the jq FILTER over the case's frames (as one array) is true.
tq() { jq -e -s "$1" "${2:-$CASE/frames}" >/dev/null 2>&1; }

# excerpt PATTERN [TRACE]: the trace lines matching PATTERN (cut short) in $CASE/excerpt.
excerpt() {
  grep -E -- "$1" "${2:-$CASE/trace}" 2>/dev/null | cut -c1-600 | head -n 30 >"$CASE/excerpt"
  [[ -s $CASE/excerpt ]] || echo "(no trace line matches /$1/)" >"$CASE/excerpt"
}

# cfail MESSAGE PATTERN: a failure of the current case, with the trace lines matching PATTERN and
# tether's stderr.
cfail() {
  excerpt "$2"
  fail "$(<"$CASE/name"): $1" "$CASE/excerpt" "$CASE/err"
}

# jq helpers over the frames: requests sent; the ids of the sessions opened (session/new answered
# with a result); all_closed: each of them got exactly one session/close.
# shellcheck disable=SC2016  # jq code, not shell
JQDEFS='def out(m): [.[] | select(.dir == "out" and .msg.method == m) | .msg];
def opened_sids: [out("session/new")[] | .id] as $n
  | [.[] | select(.dir == "in" and .msg.method == null and .msg.result.sessionId != null and (.msg.id as $i | $n | index($i) != null)) | .msg.result.sessionId];
def opened: opened_sids | length;
def closes: out("session/close") | length;
def all_closed: (opened_sids | sort) == ([out("session/close")[] | .params.sessionId] | sort);
def advertises_close: any(.[]; .dir == "in" and .msg.result.agentCapabilities.sessionCapabilities.close != null);
def perm_answers: [.[] | select(.dir == "in" and .msg.method == "session/request_permission") | .msg] as $r
  | [.[] | select(.dir == "out" and .msg.method == null and .msg.result.outcome != null) | .msg] as $a
  | [$r[] | . as $q | {options: .params.options, chosen: ($a | map(select(.id == $q.id)) | .[0].result.outcome.optionId)}];
def chose(kind): (perm_answers | length > 0) and all(perm_answers[]; .chosen as $c | any(.options[]; .optionId == $c and .kind == kind));'

# common NAME WANT_RC: the checks every run gets: exit status, no $/ping, and one session/close per
# session opened when the agent advertises sessionCapabilities.close (none otherwise).
common() {
  local want=$2 rc before=$FAILURES
  rc=$(<"$CASE/rc")
  if [[ $rc != "$want" ]]; then
    excerpt '"error"|authenticate|session/new'
    fail "$(<"$CASE/name"): exit status $rc, expected $want" "$CASE/out" "$CASE/err" "$CASE/excerpt"
    return 1
  fi
  if grep -q '"\$/ping"' "$CASE/trace" 2>/dev/null; then
    cfail "tether sent \$/ping without --heartbeat" '\$/ping'
  fi
  if tq "$JQDEFS advertises_close"; then
    tq "$JQDEFS all_closed" ||
      cfail "$(jq -s "$JQDEFS opened" "$CASE/frames") session(s) opened, $(jq -s "$JQDEFS closes" "$CASE/frames") session/close sent" 'session/(new|close)|"sessionId":"[^"]*"}}?$'
  else
    tq "$JQDEFS closes == 0" || cfail "session/close sent to an agent that does not advertise it" 'session/close'
  fi
  ((FAILURES == before)) && pass "$(<"$CASE/name"): exit $rc, no \$/ping, $(jq -s "$JQDEFS opened" "$CASE/frames") session(s) opened, $(jq -s "$JQDEFS closes" "$CASE/frames") closed"
  return 0
}

out_has() { grep -qF -- "$1" "$CASE/out"; }
err_has() { grep -qF -- "$1" "$CASE/err"; }

# ---- the cases, per agent ----

# A plain turn: the canned answer on stdout, no authenticate.
case_plain() {
  local a=$1 before=$FAILURES
  new_case "$a" plain
  agent_cmd "$a" "$CASE"
  tprompt plain "say hello"
  common plain 0 || return
  out_has "$CANNED" || cfail "stdout lacks the canned answer" 'agent_message_chunk'
  tq "$JQDEFS out(\"authenticate\") | length == 0" || cfail "authenticate sent though no login is needed" 'authenticate'
  ((FAILURES == before)) && pass "$a plain: turn completes, no authenticate ($(<"$CASE/ms") ms)"
}

# A write with --permission allow (written; the allow_once option chosen) and deny (not written).
case_perm() {
  local a=$1 before=$FAILURES
  new_case "$a" perm-allow
  agent_cmd "$a" "$CASE"
  local f=$CASE/cwd/allowed.txt
  [[ $a == codex ]] && find "$CASE/codex-home" -path '*/rules*' -type f -exec md5sum {} + 2>/dev/null | sort >"$CASE/rules.before"
  tprompt perm-allow --permission allow "TRIGGER_WRITE $f written by $a"
  if common perm-allow 0; then
    [[ $(cat "$f" 2>/dev/null) == "written by $a" ]] || cfail "--permission allow: $f not written" 'request_permission|"outcome"|tool_call'
    tq "$JQDEFS chose(\"allow_once\")" || cfail "--permission allow did not answer with the allow_once option" 'request_permission|"outcome"'
    if [[ $a == codex ]]; then
      find "$CASE/codex-home" -path '*/rules*' -type f -exec md5sum {} + 2>/dev/null | sort >"$CASE/rules.after"
      cmp -s "$CASE/rules.before" "$CASE/rules.after" ||
        { cp "$CASE/rules.after" "$CASE/excerpt"; find "$CASE/codex-home/rules" -type f -exec cat {} + >>"$CASE/excerpt" 2>/dev/null
          fail "$a perm-allow: \$CODEX_HOME/rules changed (a permanent rule was written)" "$CASE/excerpt"; }
    fi
  fi
  new_case "$a" perm-deny
  agent_cmd "$a" "$CASE"
  f=$CASE/cwd/denied.txt
  tprompt perm-deny --permission deny "TRIGGER_WRITE $f written by $a"
  # codex's reject option ("abort") ends the turn as cancelled: exit 1.
  local want=0
  [[ $a == codex ]] && want=1
  if common perm-deny "$want"; then
    [[ ! -e $f ]] || cfail "--permission deny: $f was written" 'request_permission|"outcome"|tool_call'
    tq "$JQDEFS chose(\"reject_once\")" || cfail "--permission deny did not answer with the reject_once option" 'request_permission|"outcome"'
  fi
  ((FAILURES == before)) && pass "$a permission: allow writes (allow_once), deny does not (reject_once)"
}

# codex only: --permission allow-always answers the allow_always option (codex then writes a rule).
case_perm_always() {
  local a=$1
  new_case "$a" perm-always
  agent_cmd "$a" "$CASE"
  local f=$CASE/cwd/always.txt
  tprompt perm-always --permission allow-always "TRIGGER_WRITE $f written by $a"
  common perm-always 0 || return
  [[ -e $f ]] || { cfail "--permission allow-always: $f not written" 'request_permission|"outcome"'; return; }
  tq "$JQDEFS chose(\"allow_always\")" || { cfail "--permission allow-always did not answer the allow_always option" 'request_permission|"outcome"'; return; }
  pass "$a permission: allow-always answers allow_always"
}

# An edit: read then edit for claude and qwen, sed through the shell for codex.
case_edit() {
  local a=$1
  new_case "$a" edit
  agent_cmd "$a" "$CASE"
  local f=$CASE/cwd/edit.txt
  printf 'alpha beta gamma\n' >"$f"
  tprompt edit --permission allow "TRIGGER_EDIT $f beta BETA"
  common edit 0 || return
  [[ $(<"$f") == "alpha BETA gamma" ]] || { cfail "the edit was not made: '$(<"$f")'" 'tool_call|request_permission'; return; }
  pass "$a edit: the file was edited"
}

# before_permission FILE: the removed line "-beta" and the added line "+BETA" of the edit's diff
# come before the first "permission:" line of FILE (tether's stderr).
before_permission() {
  awk '/^ *-beta$/ && !r { r = NR } /^ *\+BETA$/ && !a { a = NR } /permission: / && !p { p = NR }
       END { exit !(r && a && p && r < p && a < p) }' "$1"
}

# The edit's diff is shown before the permission decision: `prompt -v` on stderr, and talk (its
# script mode, -v) likewise; --permission deny, so the file stays as it was.
case_diff() {
  local a=$1 before=$FAILURES
  new_case "$a" diff
  agent_cmd "$a" "$CASE"
  local f=$CASE/cwd/diff.txt
  printf 'alpha\nbeta\ngamma\n' >"$f"
  tprompt diff -v --permission deny "TRIGGER_EDIT $f beta BETA"
  if common diff 0; then
    before_permission "$CASE/err" || cfail "prompt -v: no '-beta' and '+BETA' diff lines before the permission line" 'request_permission|"diff"'
    [[ $(<"$f") == $'alpha\nbeta\ngamma' ]] || cfail "--permission deny: the file was edited" 'request_permission|"outcome"'
  fi
  new_case "$a" diff-talk
  agent_cmd "$a" "$CASE"
  f=$CASE/cwd/diff.txt
  printf 'alpha\nbeta\ngamma\n' >"$f"
  echo "$a diff-talk" >"$CASE/name"
  (cd "$CASE/cwd" && echo "TRIGGER_EDIT $f beta BETA" |
    timeout -k 5 90 "$TETHER" talk -v --permission deny --trace "$CASE/trace" -- "${CMD[@]}" >"$CASE/out" 2>"$CASE/err")
  echo $? >"$CASE/rc"
  frames "$CASE/trace" >"$CASE/frames"
  if common diff-talk 0; then
    before_permission "$CASE/err" || cfail "talk -v: no '-beta' and '+BETA' diff lines before the permission line" 'request_permission|"diff"'
  fi
  ((FAILURES == before)) && pass "$a diff: the edit's removed and added lines come before the permission line (prompt -v, talk -v)"
}

# Batch, 3 items in sessions of their own: all ok, one session/close per session/new.
case_batch() {
  local a=$1
  new_case "$a" batch
  agent_cmd "$a" "$CASE"
  printf '{"id":"b%d","prompt":"say hello %d"}\n' 1 1 2 2 3 3 >"$CASE/in.jsonl"
  (cd "$CASE/cwd" && exec timeout -k 5 120 "$TETHER" batch --trace "$CASE/trace" -- "${CMD[@]}" \
    <"$CASE/in.jsonl" >"$CASE/out" 2>"$CASE/err")
  echo $? >"$CASE/rc"
  frames "$CASE/trace" >"$CASE/frames"
  echo "$a batch" >"$CASE/name"
  common batch 0 || return
  jq -e -s --arg t "$CANNED" 'length == 3 and all(.[]; .ok == true and (.text | contains($t)))' "$CASE/out" >/dev/null ||
    { fail "$a batch: not 3 ok results with the canned answer" "$CASE/out" "$CASE/err"; return; }
  tq "$JQDEFS opened == 3" || { cfail "$(jq -s "$JQDEFS opened" "$CASE/frames") sessions opened, expected 3" 'session/new'; return; }
  pass "$a batch: 3 items, 3 sessions, $(jq -s "$JQDEFS closes" "$CASE/frames") session/close"
}

# The agent's own error text reaches tether's message: the mock answers the model call with an
# HTTP error (codex: 400, which it does not retry).
case_error() {
  local a=$1 status=401
  [[ $a == codex ]] && status=400
  new_case "$a" error
  agent_cmd "$a" "$CASE"
  tprompt error "TRIGGER_FAIL $status mock says: key xyz-$a refused"
  common error 1 || return
  err_has "mock says: key xyz-$a refused" || { cfail "tether's error lacks the agent's text" '"error"'; return; }
  pass "$a error: the agent's error text is in tether's message"
}

# --model ID: the model call goes to that model (the mock logs the model of each request).
case_model() {
  local a=$1 model=$2 want=$3
  new_case "$a" model
  agent_cmd "$a" "$CASE"
  tprompt model --model "$model" "say hello CASE=$a-model"
  common model 0 || return
  local got
  got=$(jq -r --arg m "CASE=$a-model" 'select((.last.user // "") | contains($m)) | .model' "$VLOG" | tail -n 1)
  [[ $got == *"$want"* ]] || { cfail "--model $model: the API was called with model '$got'" 'set_config_option|set_model|session/new'; return; }
  pass "$a --model $model: the API saw model $got"
}

# qwen: --mode default (from its automatic start mode) with --permission deny: the write is not
# carried out; the trace shows the mode being set. The control run without --mode writes.
case_qwen_mode() {
  local a=qwen before=$FAILURES
  new_case qwen mode-control
  qwen_config "$CASE"
  agent_cmd qwen "$CASE"
  local f=$CASE/cwd/auto.txt
  tprompt mode-control --permission deny "TRIGGER_WRITE $f written in auto mode"
  if common mode-control 0; then
    [[ -e $f ]] || cfail "control: qwen's automatic mode did not write (the --mode check below proves nothing)" 'request_permission|tool_call'
  fi
  local how
  for how in mode set; do
    new_case qwen "$how"
    qwen_config "$CASE"
    agent_cmd qwen "$CASE"
    f=$CASE/cwd/mode.txt
    if [[ $how == mode ]]; then
      tprompt mode --mode default --permission deny "TRIGGER_WRITE $f written despite the mode"
    else
      tprompt set --set mode=default --permission deny "TRIGGER_WRITE $f written despite the mode"
    fi
    common "$how" 0 || continue
    tq "$JQDEFS (out(\"session/set_mode\") | any(.params.modeId == \"default\")) or (out(\"session/set_config_option\") | any(.params.configId == \"mode\" and .params.value == \"default\"))" ||
      cfail "no session/set_mode (or set_config_option mode) to default in the trace" 'set_mode|set_config_option'
    [[ ! -e $f ]] || cfail "the write was carried out in mode default with --permission deny" 'set_mode|set_config_option|request_permission|tool_call'
  done
  ((FAILURES == before)) && pass "qwen --mode default / --set mode=default: the mode is set, a denied write is not made"
}

# claude: --mode acceptEdits: the write is made without a permission request even with deny.
case_claude_mode() {
  new_case claude mode
  agent_cmd claude "$CASE"
  local f=$CASE/cwd/accept.txt
  tprompt mode --mode acceptEdits --permission deny "TRIGGER_WRITE $f written in acceptEdits"
  common mode 0 || return
  tq "$JQDEFS (out(\"session/set_mode\") | any(.params.modeId == \"acceptEdits\")) or (out(\"session/set_config_option\") | any(.params.configId == \"mode\" and .params.value == \"acceptEdits\"))" ||
    { cfail "no session/set_mode acceptEdits in the trace" 'set_mode|set_config_option'; return; }
  [[ -e $f ]] || { cfail "acceptEdits: the write was not made" 'request_permission|tool_call'; return; }
  pass "claude --mode acceptEdits: the mode is set and edits need no permission"
}

# qwen without any key: session/new fails with its own "Authentication required"; its one auth
# method is a terminal login, nothing tether can use: exit 69 naming the method.
case_qwen_nokey() {
  new_case qwen nokey
  rm -f "$CASE/home/.qwen/settings.json"
  agent_cmd qwen "$CASE"
  tprompt nokey "say hello"
  common nokey 69 || return
  err_has "Authentication required" || { cfail "tether's message lacks qwen's 'Authentication required'" 'session/new|authenticate|"error"'; return; }
  err_has "openai" || { cfail "tether's message does not name the auth method 'openai'" 'authMethods'; return; }
  pass "qwen without a key: exit 69, 'Authentication required', the method named"
}

# codex, provider openai: with OPENAI_API_KEY set, authenticate openai-api-key then the turn; with
# no key: exit 69 within 2 s, naming the methods.
case_codex_auth() {
  new_case codex auth-env
  codex_config "$CASE" openai
  # tether looks for the variables of env_var methods in its own environment; env -i passes the
  # key on to codex.
  agent_cmd codex "$CASE" OPENAI_API_KEY=sk-mock
  OPENAI_API_KEY=sk-mock tprompt auth-env "say hello"
  if common auth-env 0; then
    if ! tq "$JQDEFS out(\"authenticate\") | length == 1 and .[0].params.methodId == \"openai-api-key\""; then
      cfail "expected one authenticate with methodId openai-api-key" 'authenticate|session/new'
    elif out_has "$CANNED"; then
      pass "codex OPENAI_API_KEY: authenticate openai-api-key, the turn completes"
    else
      cfail "the turn did not complete" 'session/prompt|"error"'
    fi
  fi
  new_case codex auth-none
  codex_config "$CASE" openai
  agent_cmd codex "$CASE"
  tprompt auth-none "say hello"
  common auth-none 69 || return
  local ms m
  ms=$(<"$CASE/ms")
  # (codex ignores stdin EOF: a stop that waits for it to exit on its own takes the whole grace.)
  ((ms <= 2000)) || { cfail "took $ms ms, expected at most 2000" 'authenticate|session/new|\*\*'; return; }
  for m in codex-api-key openai-api-key; do
    err_has "$m" || { cfail "tether's message does not name the method $m" 'authMethods'; return; }
  done
  tq "$JQDEFS out(\"authenticate\") | length == 0" || { cfail "authenticate sent with nothing usable" 'authenticate'; return; }
  pass "codex without a key: exit 69 in $ms ms, the methods named"
}

# serve: tether serve in front of claude, 6 prompt --connect: each client's session is closed at
# the agent when the client leaves (while the server runs on); then --stop closes the main one, so
# the bridge's trace has a session/close for each session/new.
case_serve() {
  new_case claude serve
  agent_cmd claude "$CASE"
  echo "claude serve" >"$CASE/name"
  local sock=$CASE/serve.sock i before=$FAILURES
  (cd "$CASE/cwd" && exec "$TETHER" serve --socket "$sock" --trace "$CASE/trace" -- "${CMD[@]}" \
    </dev/null >"$CASE/serve.out" 2>"$CASE/err") &
  local spid=$!
  if ! wait_until 60 grep -qs "listening on" "$CASE/err"; then
    fail "claude serve: the server did not come up" "$CASE/err"
    kill -TERM "$spid" 2>/dev/null
    wait "$spid"
    return
  fi
  for i in 1 2 3 4 5 6; do
    (cd "$CASE/cwd" && timeout -k 5 60 "$TETHER" prompt --connect="$sock" "say hello $i" >"$CASE/connect$i.out" 2>"$CASE/connect$i.err")
    local rc=$?
    ((rc == 0)) || fail "claude serve: prompt --connect #$i exit status $rc" "$CASE/connect$i.out" "$CASE/connect$i.err"
    grep -qF "$CANNED" "$CASE/connect$i.out" || fail "claude serve: prompt --connect #$i lacks the canned answer" "$CASE/connect$i.out"
  done
  # Before --stop: the six clients' sessions are closed already, only the main one is open.
  local still_open=-1
  client_sessions_closed() {
    frames "$CASE/trace" >"$CASE/frames"
    still_open=$(jq -s "$JQDEFS opened - closes" "$CASE/frames")
    ((still_open == 1))
  }
  wait_until 10 client_sessions_closed ||
    cfail "$still_open sessions open at the agent after 6 prompt --connect clients left (want 1: the main session)" 'session/(new|close)'
  timeout -k 5 60 "$TETHER" serve --stop --socket "$sock" >/dev/null 2>"$CASE/stop.err" || fail "claude serve: --stop failed" "$CASE/stop.err"
  if ! wait_until 30 pid_gone "$spid"; then
    fail "claude serve: still running 30 s after --stop" "$CASE/err"
    kill -KILL "$spid" 2>/dev/null
  fi
  wait "$spid"
  frames "$CASE/trace" >"$CASE/frames"
  local opened closes
  opened=$(jq -s "$JQDEFS opened" "$CASE/frames")
  closes=$(jq -s "$JQDEFS closes" "$CASE/frames")
  ((opened >= 7)) || cfail "only $opened sessions opened on the bridge for 6 clients and the main session" 'session/new'
  tq "$JQDEFS all_closed" || cfail "$opened sessions opened on the bridge, $closes session/close sent (not one per session)" 'session/(new|close)'
  grep -q '"\$/ping"' "$CASE/trace" && cfail "serve sent \$/ping without --heartbeat" '\$/ping'
  ((FAILURES == before)) && pass "claude serve: 6 prompt --connect, each client's session closed when it left; $opened sessions, $closes closed"
}

# claude with --mcp: session/new carries the stdio server; claude offers the server's tools to
# the model (the mock sees mcp__everything__echo) and, asked to, calls echo: its answer comes back
# to the model as a tool result.
case_mcp() {
  new_case claude mcp
  agent_cmd claude "$CASE"
  local msg="tether-mcp-$$"
  tprompt mcp --permission allow --mcp "everything=$(command -v node) $MCP_ENTRY stdio" \
    "TRIGGER_MCP mcp__everything__echo $msg"
  common mcp 0 || return
  tq "$JQDEFS out(\"session/new\") | any(.params.mcpServers | any(.name == \"everything\" and (.args | index(\"stdio\") != null)))" ||
    { cfail "session/new lacks the mcpServers entry 'everything'" 'session/new'; return; }
  jq -e -s 'any(.[]; .kind == "anthropic" and (.tools // [] | index("mcp__everything__echo") != null))' "$VLOG" >/dev/null ||
    { cfail "the model was never offered mcp__everything__echo" 'session/new'; return; }
  jq -e -s --arg m "$msg" 'any(.[]; .kind == "anthropic" and ((.last.toolResult // "") | contains("Echo: " + $m)))' "$VLOG" >/dev/null ||
    { cfail "no tool result 'Echo: $msg' came back to the model" 'tool_call|request_permission'; return; }
  pass "claude --mcp: session/new carries the server, the model saw mcp__everything__echo, its echo came back ($(<"$CASE/ms") ms)"
}

lane_claude() {
  case_mcp
  case_plain claude
  case_perm claude
  case_edit claude
  case_diff claude
  case_batch claude
  case_error claude
  case_model claude haiku haiku
  case_claude_mode
  case_serve
}
lane_codex() {
  # The auth cases take 30 s each against a tether that waits for codex's browser login: start
  # them first, in the background.
  (case_codex_auth) 2>"$TMP/lane-codex-auth.log" &
  local auth=$!
  case_plain codex
  case_perm codex
  case_perm_always codex
  case_edit codex
  case_batch codex
  case_error codex
  case_model codex gpt-5.4-mini gpt-5.4-mini
  wait "$auth"
  cat "$TMP/lane-codex-auth.log" >&2
}
lane_qwen() {
  case_plain qwen
  case_perm qwen
  case_edit qwen
  case_batch qwen
  case_error qwen
  case_qwen_mode
  case_qwen_nokey
}

IFS=, read -r -a AGENTS <<<"${REAL_AGENTS:-claude,codex,qwen}"
LANES=()
for a in "${AGENTS[@]}"; do
  ("lane_$a") 2>"$TMP/lane-$a.log" &
  LANES+=($!)
done
for pid in "${LANES[@]}"; do wait "$pid"; done
for a in "${AGENTS[@]}"; do
  cat "$TMP/lane-$a.log" >&2
  n=$(grep -c "^$TEST_NAME: FAIL: " "$TMP/lane-$a.log")
  FAILURES=$((FAILURES + n))
done
if grep -q '"kind":"crash"\|"kind":"unknown"' "$VLOG"; then
  grep '"kind":"crash"\|"kind":"unknown"' "$VLOG" | grep -v '"method":"HEAD","path":"/"' | head -n 5 >"$TMP/vendor.odd"
  [[ -s $TMP/vendor.odd ]] && note "mock vendor: requests it did not know (see above)" && cat "$TMP/vendor.odd" >&2
fi
note "ran in $((SECONDS - STARTED)) s"
finish
