#!/usr/bin/env bash
# The batch recipes of the docs, run as written on a 500-item input, and merged by their documented
# step to exactly what one plain `tether batch` run writes (elapsedMs aside, which is a time):
#   parallel-shards (README)  GNU parallel, --shard K/4 over the whole input; merged by index
#   parallel-chunks (README)  GNU parallel --pipe -k; each chunk is its own batch, so index counts
#                             within a chunk (checked) and the lines are compared without it
#   slurm (docs/batch.md)     once per task of a 3-task array numbered from 1, with Slurm's
#                             variables set; it must run the agent given after -- (my_agent.py
#                             records that it ran); merged by index
# Skips (exit 77) when GNU parallel or jq is not installed (scripts/deps installs both).
#
# usage: recipes_test.sh TETHER_EXE SRC_DIR
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

for tool in parallel jq; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIP: $tool is not installed (scripts/deps installs it)"
    exit 77
  fi
done
# GNU parallel, not moreutils' parallel (which takes other options).
parallel --version 2>/dev/null | grep -q 'GNU parallel' || {
  echo "SKIP: the parallel on PATH is not GNU parallel"
  exit 77
}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tether-recipes-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
BLOCKS_DIR=$TMP/blocks
mkdir -p "$BLOCKS_DIR"
cd "$SRC" || exit 1
failed=0
fail() {
  echo "FAIL: $*"
  failed=$((failed + 1))
}

# recipe NAME: the path of the block marked "recipe NAME", and where it is in $WHERE.
recipe() {
  local entry
  entry=$(list_blocks README.md docs/*.md | awk -F'\t' -v n="$1" '$3 == "recipe" && $4 == n')
  [[ -n $entry ]] || return 1
  local file line
  IFS=$'\t' read -r file line _ _ <<<"$entry"
  WHERE="$file:$line"
  RECIPE="$BLOCKS_DIR/${file//\//_}:$line.sh"
}

# 500 items: string and number ids, meta keys, so that index, id and meta must all come back right.
make_input() {
  local i
  for ((i = 1; i <= 500; i++)); do
    if ((i % 2)); then
      printf '{"id":"q%d","prompt":"item %d: tell me about shards","n":%d}\n' "$i" "$i" "$i"
    else
      printf '{"id":%d,"prompt":"item %d"}\n' "$i" "$i"
    fi
  done
}

# The reference: one plain run over the same input, elapsedMs removed.
ref=$TMP/ref
prepare_dir "$ref"
make_input >"$ref/work/prompts.jsonl"
in_env "$ref" tether batch -q <"$ref/work/prompts.jsonl" >"$ref/single.jsonl" || fail "the single run failed"
jq -c 'del(.elapsedMs)' "$ref/single.jsonl" >"$ref/expected.jsonl"
jq -c 'del(.elapsedMs, .index)' "$ref/single.jsonl" >"$ref/expected-noindex.jsonl"
[[ $(wc -l <"$ref/expected.jsonl") == 500 ]] || fail "the single run wrote $(wc -l <"$ref/expected.jsonl") lines, not 500"

# run_recipe NAME DIR [VAR=VALUE...]: the recipe in DIR (prepared, with the 500 items).
run_recipe() {
  local name=$1 d=$2
  shift 2
  local started=$SECONDS
  run_block "$d" "$RECIPE" 60 "$@"
  if ((BLOCK_RC != 0 || BLOCK_LEFT)); then
    fail "recipe $name ($WHERE) exited $BLOCK_RC${BLOCK_LEFT:+ (left processes: $BLOCK_LEFT)}"
    sed 's/^/    | /' "$RECIPE"
    tail -n 10 "$d/stderr" | sed 's/^/      /'
    return 1
  fi
  echo "ran recipe $name ($WHERE) in $((SECONDS - started)) s"
}

# same_lines WHAT EXPECTED ACTUAL
same_lines() {
  if ! cmp -s "$2" "$3"; then
    fail "$1 differs from the single run:"
    diff "$2" "$3" | head -n 10 | sed 's/^/    /'
  fi
}

# --- shards ---------------------------------------------------------------------------------------
if recipe parallel-shards; then
  d=$TMP/shards
  prepare_dir "$d"
  cp "$ref/work/prompts.jsonl" "$d/work/"
  if run_recipe parallel-shards "$d"; then
    jq -c 'del(.elapsedMs)' "$d/work/results.jsonl" >"$d/got.jsonl"
    same_lines "the merged output of the shard recipe" "$ref/expected.jsonl" "$d/got.jsonl"
  fi
else
  fail "no block marked 'docs-test: recipe parallel-shards' in the README"
fi

# --- chunks ---------------------------------------------------------------------------------------
if recipe parallel-chunks; then
  d=$TMP/chunks
  prepare_dir "$d"
  cp "$ref/work/prompts.jsonl" "$d/work/"
  if run_recipe parallel-chunks "$d"; then
    jq -c 'del(.elapsedMs, .index)' "$d/work/results.jsonl" >"$d/got.jsonl"
    same_lines "the output of the chunk recipe (without index)" "$ref/expected-noindex.jsonl" "$d/got.jsonl"
    # What the README says of index there: it counts within each chunk.
    first_of_second=$(sed -n 201p "$d/work/results.jsonl" | jq -c '[.id, .index]')
    [[ $first_of_second == '[201,1]' || $first_of_second == '["q201",1]' ]] ||
      fail "chunk recipe: the 201st line is $first_of_second; the README says index restarts at 1 in every chunk of 200"
  fi
else
  fail "no block marked 'docs-test: recipe parallel-chunks' in the README"
fi

# --- Slurm ----------------------------------------------------------------------------------------
if recipe slurm; then
  d=$TMP/slurm
  prepare_dir "$d"
  cp "$ref/work/prompts.jsonl" "$d/work/"
  # Not the script's own --array=0-7: an array of 3 numbered from 1 shows that the shard count
  # and the first shard come from Slurm's variables, not from numbers written in the script.
  count=3 ok=1
  for ((k = 1; k <= count; k++)); do
    run_recipe "slurm task $k of 1-$count" "$d" SLURM_ARRAY_TASK_ID="$k" SLURM_ARRAY_TASK_MIN=1 \
      SLURM_ARRAY_TASK_MAX="$count" SLURM_ARRAY_TASK_COUNT="$count" || ok=0
  done
  if ((ok)); then
    (cd "$d/work" && cat out/out.*.jsonl | jq -cs 'sort_by(.index)[]') | jq -c 'del(.elapsedMs)' >"$d/got.jsonl"
    same_lines "the merged output of the Slurm recipe's $count tasks" "$ref/expected.jsonl" "$d/got.jsonl"
    [[ -s $d/work/my_agent.ran ]] || fail "the Slurm recipe did not run the agent given after -- (my_agent.py never ran)"
  fi
else
  fail "no block marked 'docs-test: recipe slurm' in docs/batch.md"
fi

echo "$failed failed"
((failed == 0))
