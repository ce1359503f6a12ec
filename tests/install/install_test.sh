#!/usr/bin/env bash
# install: what a user gets from `meson install`, checked on the installed files rather than in
# the build tree. Installs this build under a temporary DESTDIR (no rebuild: meson test built
# it), then checks that the binary, the man page and the three completion scripts are where the
# shells and man look; that the page renders without a groff warning and that `man tether` finds
# it with PREFIX/bin on PATH; that the installed bash completion completes commands, options and
# values when its function is called as bash calls it (COMP_WORDS, COMP_CWORD, COMPREPLY); and,
# when those shells are here, that zsh and fish load their scripts and fish completes from it.
#
#   install_test.sh MESON BUILD_DIR PREFIX BINDIR MANDIR DATADIR
#   install_test.sh --generate TETHER
# The second form, for a sanitizer build (which installs no completions): the same completion
# checks on the scripts that TETHER prints, and no install or man page.
set -euo pipefail

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

dest=$(mktemp -d "${TMPDIR:-/tmp}/tether-install-test.XXXXXX")
trap 'rm -rf -- "$dest"' EXIT

if [[ $1 == --generate ]]; then
  bin=$2 page=''
  bash_script=$dest/tether.bash zsh_script=$dest/_tether fish_script=$dest/tether.fish
  for shell in bash zsh fish; do
    script_var=${shell}_script
    "$bin" completion "$shell" >"${!script_var}" || fail "tether completion $shell failed"
  done
else
  meson=$1 build=$2 prefix=$3
  under_prefix() { [[ $1 == /* ]] && echo "$1" || echo "$prefix/$1"; }
  bindir=$(under_prefix "$4") mandir=$(under_prefix "$5") datadir=$(under_prefix "$6")
  if ! "$meson" install -C "$build" --destdir "$dest" --no-rebuild --skip-subprojects --quiet >"$dest/install.log" 2>&1; then
    cat "$dest/install.log" >&2
    echo "FAIL: meson install --destdir failed" >&2
    exit 1
  fi
  bin=$dest$bindir/tether
  page=$dest$mandir/man1/tether.1
  bash_script=$dest$datadir/bash-completion/completions/tether
  zsh_script=$dest$datadir/zsh/site-functions/_tether
  fish_script=$dest$datadir/fish/vendor_completions.d/tether.fish
  for file in "$bin" "$page" "$bash_script" "$zsh_script" "$fish_script"; do
    [[ -s $file ]] || fail "not installed: ${file#"$dest"}"
  done
  ((failures == 0)) || exit 1
  [[ -x $bin ]] || fail "installed tether is not executable"
  "$bin" --version | grep -q '^tether ' || fail "installed tether --version"
  diff -q <("$bin" completion bash) "$bash_script" >/dev/null || fail "tether completion bash differs from the installed script"
fi

# Another shell is a usage error that names the shells.
set +e
err=$("$bin" completion tcsh 2>&1 >/dev/null)
rc=$?
set -e
[[ $rc == 64 && $err == "tether: "*bash*zsh*fish* ]] || fail "tether completion tcsh: exit $rc, stderr '$err' (want 64, a tether: message naming the shells)"
err=$("$bin" completion bsh 2>&1 >/dev/null) || true
[[ $err == *"did you mean bash?"* ]] || fail "tether completion bsh: no 'did you mean bash?' in '$err'"

# The man page: renders without warnings, and `man tether` finds it with PREFIX/bin on PATH.
if [[ -z $page ]]; then
  : # --generate: nothing installed
elif command -v man >/dev/null 2>&1; then
  text=$(MANPAGER=cat MANWIDTH=80 man --warnings -l "$page" 2>"$dest/man.err") || fail "man -l failed: $(cat "$dest/man.err")"
  [[ ! -s $dest/man.err ]] || fail "man -l warned: $(head -5 "$dest/man.err")"
  grep -q '^NAME' <<<"$text" && grep -q 'tether completion' <<<"$text" || fail "man -l: the rendered page lacks NAME or tether completion"
  found=$(env -u MANPATH PATH="$dest$bindir:/usr/bin:/bin" man -w tether 2>&1) || true
  [[ $found == "$page" ]] || fail "man -w tether with the installed bin on PATH found '$found', not $page"
elif command -v groff >/dev/null 2>&1; then
  groff -man -Tutf8 -ww -z "$page" 2>"$dest/man.err" && [[ ! -s $dest/man.err ]] || fail "groff: $(head -5 "$dest/man.err")"
else
  fail "neither man nor groff to render the page (scripts/deps installs man-db)"
fi

# Bash completion: the installed script in a plain non-interactive bash (no bash-completion).
mkdir -p "$dest/files/some dir"
touch "$dest/files/socket1" "$dest/files/some dir/x"
commands=$("$bin" --help | awk '/^Subcommands:/ { on = 1; next } on && NF == 0 { exit } on { print $1 }' | sort | tr '\n' ' ')
[[ -n $commands ]] || fail "tether --help lists no commands"
# Every option that `tether talk --help` shows, and no other: what `tether talk <Tab>` offers.
talk_options=$("$bin" talk --help | grep -oE '^  +-[-a-zA-Z0-9,]+' | tr -d ' ' | tr ',' '\n' | sort | tr '\n' ' ')
out=$(DIR="$dest/files" COMMANDS="$commands" TALK_OPTIONS="${talk_options% }" bash --norc --noprofile -c '
  set -u
  source "$1"
  # complete WORDS... EXPECTED: what _tether offers for the last word, sorted, space-separated.
  check() {
    local want=${@: -1}
    COMP_WORDS=("${@:1:$#-1}")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _tether
    local got
    got=$(printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " ")
    got=${got% }
    [[ $got == "$want" ]] || echo "FAIL: completing \"${COMP_WORDS[*]}\": got [$got], want [$want]"
  }
  check tether pr prompt
  check tether "" "${COMMANDS% }"
  check tether prompt --ti --timeout
  check tether prompt --permission a "allow allow-always ask"
  check tether prompt --permission = a "allow allow-always ask"
  check tether talk --color=n --color=never
  check tether completion "" "bash fish zsh"
  check tether prompt --timeout "" ""
  check tether prompt --permission allow hello "" ""
  check tether talk --permission allow "" "$TALK_OPTIONS"
  check tether prompt --connect="$DIR/so" "--connect=$DIR/socket1 --connect=$DIR/some dir"
  check tether prompt --permission allow -- printen printenv
  check tether prompt -- cat "$DIR/some dir/" "$DIR/some dir/x"
  for c in $COMMANDS; do
    COMP_WORDS=(tether "$c" --hel) COMP_CWORD=2 COMPREPLY=()
    _tether
    [[ ${COMPREPLY[*]} == --help ]] || echo "FAIL: tether $c --hel offers [${COMPREPLY[*]}], not --help"
  done
' bash "$bash_script" 2>&1) || fail "bash completion script failed: $out"
[[ -z $out ]] || fail "bash completion:"$'\n'"$out"

# zsh and fish, when here (scripts/deps does not install them): zsh parses its script and compinit
# binds it to tether from its directory; fish completes from its script (`complete -C` is fish
# asked for completions as at a Tab).
if command -v zsh >/dev/null 2>&1; then
  zsh -n "$zsh_script" || fail "zsh -n $zsh_script"
  got=$(env -i HOME="$dest" PATH=/usr/bin:/bin zsh -fc 'fpath=("$1" $fpath); autoload -Uz compinit; compinit -u -D; print -r -- "${_comps[tether]}"' \
    zsh "$(dirname "$zsh_script")" 2>&1) || true
  [[ $got == _tether ]] || fail "zsh compinit binds tether to '$got', not _tether"
else
  echo "note: no zsh here, its script is not checked"
fi
if command -v fish >/dev/null 2>&1; then
  fish -n "$fish_script" || fail "fish -n $fish_script"
  got=$(env -i HOME="$dest" PATH=/usr/bin:/bin fish --no-config -c 'source $argv[1]; complete -C "tether prompt --permission a"' "$fish_script" 2>&1 |
    cut -f1 | sort | tr '\n' ' ') || true
  [[ $got == "allow allow-always ask " ]] || fail "fish completes 'tether prompt --permission a' with [$got]"
else
  echo "note: no fish here, its script is not checked"
fi

if ((failures > 0)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "ok: ${page:+installed and }checked"
