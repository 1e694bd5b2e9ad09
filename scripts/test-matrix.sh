#!/usr/bin/env bash
# Runs the README's test command, `npm test` (build, then the whole suite), once per supported Node
# line: 20, 22 and 24 (or the majors in KOCACHE_TEST_NODE_LINES). The machine's own `node` serves
# its line; the others come from the npm registry (scripts/install-node.sh) and are put first on
# PATH, so npm, the build, the tests and every `node` they start are that line. The machine's line
# runs last, which leaves dist/ built by it. A line that cannot be installed or fails a test fails
# the run; none is skipped.
set -uo pipefail
cd "$(dirname "$0")/.."
read -r -a lines <<<"${KOCACHE_TEST_NODE_LINES:-20 22 24}"
own=$(node -p 'process.versions.node.split(".")[0]')
ordered=()
for line in "${lines[@]}"; do [ "$line" = "$own" ] || ordered+=("$line"); done
for line in "${lines[@]}"; do [ "$line" != "$own" ] || ordered+=("$line"); done
results=()
failed=0
for line in "${ordered[@]}"; do
  path=$PATH
  if [ "$line" != "$own" ]; then
    if ! bin=$(bash scripts/install-node.sh "$line"); then
      results+=("Node $line: not installed"); failed=1; continue
    fi
    path=$bin:$PATH
  fi
  version=$(PATH=$path node -p process.version)
  echo "test-matrix: npm test on Node $version" >&2
  if PATH=$path npm test; then
    results+=("Node $version: passed")
  else
    results+=("Node $version: FAILED"); failed=1
  fi
done
printf 'test-matrix: %s\n' "${results[@]}" >&2
exit $failed
