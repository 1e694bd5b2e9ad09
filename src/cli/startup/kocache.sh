#!/bin/sh
# The `kocache` command. Node reads every certificate named by NODE_EXTRA_CA_CERTS as it starts,
# before any JavaScript runs, on every command (the register in docs/performance.md), although
# only a command that opens a TLS connection needs them, and a cache hit opens none. So the
# file's name is handed over as KOCACHE_DEFERRED_CA_CERTS and src/remote/extra-ca.ts loads it at
# the first TLS connection; the launcher puts the variable back for anything kocache runs
# (credential helpers). Left alone when NODE_OPTIONS picks a CA store, where adding to Node's
# bundled roots would not be the same trust.
self=$0
# npm links bin/kocache to this file: find the real folder to find kocache.cjs beside it.
while [ -L "$self" ]; do
  link=$(readlink "$self")
  case $link in
    /*) self=$link ;;
    *) self=${self%/*}/$link ;;
  esac
done
case $self in
  */*) here=${self%/*} ;;
  *) here=. ;;
esac
if [ -n "${NODE_EXTRA_CA_CERTS:-}" ]; then
  case ${NODE_OPTIONS:-} in
    *-ca*) ;;
    *)
      KOCACHE_DEFERRED_CA_CERTS=$NODE_EXTRA_CA_CERTS
      export KOCACHE_DEFERRED_CA_CERTS
      unset NODE_EXTRA_CA_CERTS
      ;;
  esac
fi
# No V8 flags: they would make Node refuse the code cache of its built-in modules (kocache.cjs).
exec node "$here/kocache.cjs" "$@"
