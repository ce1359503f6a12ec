#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions called indirectly through wait_until
# Interop: `tether call` against a stdio JSON-RPC server that nobody here wrote,
# @modelcontextprotocol/server-everything (an MCP server, pinned in mcp/package-lock.json).
#
# usage: mcp_call_test.sh TETHER_EXE SRC_DIR WORK_DIR
#   SRC_DIR  tests/interop in the source tree (holds mcp/package.json and mcp/package-lock.json)
#   WORK_DIR a scratch directory in the build tree; the packages are installed in WORK_DIR/mcp
# Exit 77 (skip) only when node or npm is missing.

TEST_NAME=mcp_call
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
if command -v jq >/dev/null 2>&1; then HAVE_JQ=1; else HAVE_JQ=0; note "jq missing: falling back to grep"; fi
setup_tmp

npm_prepare "$SRC/mcp" "$WORK/mcp" || { note "FAIL: npm ci in $WORK/mcp failed"; exit 1; }
PKG=$WORK/mcp/node_modules/@modelcontextprotocol/server-everything
ENTRY=$PKG/$(node -p 'require(process.argv[1]).bin["mcp-server-everything"]' "$PKG/package.json") || exit 1
[[ -f $ENTRY ]] || { note "FAIL: server entry point $ENTRY not found"; exit 1; }
VERSION=$(node -p 'require(process.argv[1]).version' "$PKG/package.json")
note "server-everything $VERSION, entry $ENTRY"

# The server ignores arguments after the transport name: a unique marker lets us find leftovers.
MARKER="--tether-interop-mcp-$$-$RANDOM"
BRIDGE=(node "$ENTRY" stdio "$MARKER")
MESSAGE="hello from tether, pid $$"

# jqt FILE [JQ OPTIONS...] FILTER: true when FILTER holds on every JSON value in FILE.
jqt() {
  local file=$1
  shift
  [[ -s $file ]] && jq -e "$@" <"$file" >/dev/null 2>&1
}
no_leftovers() { ! pgrep -f -- "$MARKER" >/dev/null; }
check_leftovers() {
  if ! wait_until 5 no_leftovers; then
    fail "$1: bridge processes left behind: $(pgrep -a -f -- "$MARKER" | tr '\n' ';')"
    pkill -KILL -f -- "$MARKER"
  fi
}

INIT_PARAMS='{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"tether-interop","version":"0.0.0"}}'

# ---------------------------------------------------------------------------------------------
# 1. A whole MCP session from stdin: requests wait for the previous response, the notification is
#    sent without waiting, "jsonrpc" may be omitted, ids (number or string) come back unchanged.
# ---------------------------------------------------------------------------------------------
cat >"$TMP/in1.jsonl" <<EOF
{"jsonrpc":"2.0","id":1,"method":"initialize","params":$INIT_PARAMS}
{"method":"notifications/initialized"}
{"id":"list-2","method":"tools/list"}
{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"message":"$MESSAGE"}}}
EOF
timeout -k 5 60 "$TETHER" call -- "${BRIDGE[@]}" <"$TMP/in1.jsonl" >"$TMP/out1" 2>"$TMP/err1"
rc=$?
if ((rc != 0)); then
  fail "session: exit status $rc, expected 0" "$TMP/out1" "$TMP/err1"
fi
lines=$(wc -l <"$TMP/out1")
if ((lines != 3)); then
  fail "session: $lines output lines, expected 3 (one per request)" "$TMP/out1" "$TMP/err1"
fi
sed -n 1p "$TMP/out1" >"$TMP/l1"
sed -n 2p "$TMP/out1" >"$TMP/l2"
sed -n 3p "$TMP/out1" >"$TMP/l3"
if ((HAVE_JQ)); then
  jqt "$TMP/l1" '.id == 1 and (.result.serverInfo.name | type == "string") and .result.protocolVersion == "2025-06-18"' ||
    fail "session: line 1 is not the initialize result with serverInfo and id 1" "$TMP/l1"
  jqt "$TMP/l2" '.id == "list-2" and any(.result.tools[]; .name == "echo")' ||
    fail "session: line 2 is not the tools/list result (id \"list-2\") listing the echo tool" "$TMP/l2"
  # shellcheck disable=SC2016
  jqt "$TMP/l3" --arg m "$MESSAGE" '.id == 3 and ([.result.content[] | select(.type == "text") | .text] | any(contains($m)))' ||
    fail "session: line 3 is not the echo tool's result containing the message" "$TMP/l3"
  jqt "$TMP/out1" -s 'all(.[]; has("method") | not)' || fail "session: a server notification was printed as a response" "$TMP/out1"
else
  grep -q '"serverInfo"' "$TMP/l1" || fail "session: line 1 has no serverInfo" "$TMP/l1"
  grep -q '"name":"echo"' "$TMP/l2" || fail "session: line 2 does not list the echo tool" "$TMP/l2"
  grep -qF "$MESSAGE" "$TMP/l3" || fail "session: line 3 does not contain the message" "$TMP/l3"
fi
check_leftovers session
((FAILURES == 0)) && pass "session from stdin: initialize, notification, tools/list, tools/call echo"

# ---------------------------------------------------------------------------------------------
# 2. One request from the command line: METHOD PARAMS_JSON.
# ---------------------------------------------------------------------------------------------
before=$FAILURES
timeout -k 5 60 "$TETHER" call initialize "$INIT_PARAMS" -- "${BRIDGE[@]}" </dev/null >"$TMP/out2" 2>"$TMP/err2"
rc=$?
((rc == 0)) || fail "single: exit status $rc, expected 0" "$TMP/out2" "$TMP/err2"
lines=$(wc -l <"$TMP/out2")
((lines == 1)) || fail "single: $lines output lines, expected 1" "$TMP/out2" "$TMP/err2"
if ((HAVE_JQ)); then
  jqt "$TMP/out2" '.result.serverInfo.name | type == "string"' ||
    fail "single: the output is not an initialize result with serverInfo" "$TMP/out2"
else
  grep -q '"serverInfo"' "$TMP/out2" || fail "single: no serverInfo in the output" "$TMP/out2"
fi
check_leftovers single
((FAILURES == before)) && pass "single request: tether call initialize PARAMS"

# ---------------------------------------------------------------------------------------------
# 3. A JSON-RPC error from the server: exit 1, the error response printed with the user's id, and
#    the requests before it still answered.
# ---------------------------------------------------------------------------------------------
before=$FAILURES
cat >"$TMP/in3.jsonl" <<EOF
{"id":1,"method":"initialize","params":$INIT_PARAMS}
{"method":"notifications/initialized"}
{"id":"bad","method":"no/such_method","params":{}}
EOF
timeout -k 5 60 "$TETHER" call -- "${BRIDGE[@]}" <"$TMP/in3.jsonl" >"$TMP/out3" 2>"$TMP/err3"
rc=$?
((rc == 1)) || fail "error: exit status $rc, expected 1 (a request got a JSON-RPC error)" "$TMP/out3" "$TMP/err3"
lines=$(wc -l <"$TMP/out3")
((lines == 2)) || fail "error: $lines output lines, expected 2" "$TMP/out3" "$TMP/err3"
if ((HAVE_JQ)); then
  sed -n 2p "$TMP/out3" >"$TMP/l3b"
  jqt "$TMP/l3b" '.id == "bad" and .error.code == -32601' ||
    fail "error: line 2 is not the -32601 error for id \"bad\"" "$TMP/out3"
else
  grep -q -- '-32601' "$TMP/out3" || fail "error: no -32601 in the output" "$TMP/out3"
fi
check_leftovers error
((FAILURES == before)) && pass "JSON-RPC error: exit 1, error response printed"

finish
