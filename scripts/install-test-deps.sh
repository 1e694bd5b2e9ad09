#!/usr/bin/env bash
# Installs what the tests and benchmarks need from Debian's packages: the real OCI registry
# (CNCF distribution), skopeo to read back what kocache pushed, zstd to check zstd layers, and pigz
# for the benchmarks.
# Idempotent: does nothing when all are present.
set -euo pipefail
need=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || need+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need+=(skopeo)
command -v pigz >/dev/null 2>&1 || need+=(pigz)
command -v zstd >/dev/null 2>&1 || need+=(zstd)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing ${need[*]} (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
