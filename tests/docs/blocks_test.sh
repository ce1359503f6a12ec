#!/usr/bin/env bash
# Every command in the README (and in docs/*.md) runs as written: each ```sh block is run in a fresh
# directory with the built tether first on PATH (see lib.sh for the convention and the directory),
# and the test fails naming the file and line of each block that exits non-zero, times out, or
# leaves a process running. Then every REPL command the README's table and the man page's REPL
# COMMANDS list name is typed into `tether talk`, which must know it (issue 16: the docs said /new,
# which talk refuses).
#
# usage: blocks_test.sh TETHER_EXE SRC_DIR
set -uo pipefail
if (($# != 2)); then
  echo "usage: $0 TETHER_EXE SRC_DIR" >&2
  exit 2
fi
TETHER=$(realpath "$1")
SRC=$(realpath "$2")
TETHER_DIR=$(dirname "$TETHER")  # lib.sh puts it first on PATH
# shellcheck source=tests/docs/lib.sh
source "$SRC/tests/docs/lib.sh"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-docs-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
BLOCKS_DIR=$TMP/blocks
mkdir -p "$BLOCKS_DIR"

cd "$SRC" || exit 1
failed=0 ran=0 skipped=0
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

# --- the blocks -----------------------------------------------------------------------------------
mapfile -t blocks < <(list_blocks README.md docs/*.md)
for entry in "${blocks[@]}"; do
  IFS=$'\t' read -r file line kind arg <<<"$entry"
  where="$file:$line"
  if [[ $kind != run ]]; then
    skipped=$((skipped + 1))
    echo "not run: $where ($kind: $arg)"
    continue
  fi
  ran=$((ran + 1))
  dir=$TMP/run$ran
  prepare_dir "$dir"
  started=$SECONDS
  run_block "$dir" "$BLOCKS_DIR/${file//\//_}:$line.sh" 60
  if ((BLOCK_RC != 0 || BLOCK_LEFT)); then
    if ((BLOCK_RC == 124)); then
      fail "$where: the block did not finish within 60 s"
    elif ((BLOCK_RC != 0)); then
      fail "$where: the block exited $BLOCK_RC"
    else
      fail "$where: the block left a process running"
    fi
    sed 's/^/    | /' "$BLOCKS_DIR/${file//\//_}:$line.sh"
    echo "    stdout (last lines):"
    tail -n 5 "$dir/stdout" | sed 's/^/      /'
    echo "    stderr (last lines):"
    tail -n 10 "$dir/stderr" | sed 's/^/      /'
  else
    echo "ok: $where ($((SECONDS - started)) s)"
  fi
done
((ran > 0)) || fail "no \`\`\`sh block was found to run"

# --- the REPL commands the docs name --------------------------------------------------------------
# README: the first column of the table rows that start with a command, e.g. "| `/multi [WORD]`,
# `/edit` |". Man page: the .B/.BR/.BI lines of REPL COMMANDS up to its "Keys:".
readme_cmds() {
  # shellcheck disable=SC2016  # backquotes to match, not expansions
  grep -E '^\| `/' README.md | cut -d'|' -f2 | grep -oE '`/[^`]*`' | tr -d '`'
}
man_cmds() {
  awk '
    /^\.SH "REPL COMMANDS"/ { on = 1; next }
    on && /^\.SH/ { exit }
    on && /^Keys:/ { exit }
    on && prev == ".TP" && /^\.B[IR]? / {
      line = $0; sub(/^\.B[IR]? /, "", line)
      if ($1 == ".BI" && $3 !~ /^"/) { print $2 $3; prev = $0; next }   # .BI // text: "//text"
      n = split(line, w, /"[^"]*"/)
      for (i = 1; i <= n; i++) { gsub(/^ +| +$/, "", w[i]); if (w[i] ~ /^\//) print w[i] }
    }
    { prev = $0 }
  ' man/tether.1
}
# What to type: the command without its placeholders ("/multi [WORD]" -> "/multi").
repl_started=$SECONDS
mapfile -t cmds < <({ readme_cmds; man_cmds; } | sed -E 's/ \[[^]]*\]//g; s/ [A-Z]+( [A-Z]+)*$//' | sort -u)
((${#cmds[@]} >= 10)) || fail "found only ${#cmds[@]} REPL commands in README.md and man/tether.1: ${cmds[*]}"
dir=$TMP/repl
prepare_dir "$dir"
for c in "${cmds[@]}"; do
  printf '%s\n' "$c" | in_env "$dir" timeout -k 5 30 tether talk >/dev/null 2>"$dir/stderr"
  if grep -q 'unknown command' "$dir/stderr"; then
    fail "the docs name the REPL command '$c', which tether talk does not know: $(head -n 1 "$dir/stderr")"
  fi
done
echo "REPL commands checked ($((SECONDS - repl_started)) s): ${cmds[*]}"

echo "$ran blocks run, $skipped not run, $failed failed"
((failed == 0))
