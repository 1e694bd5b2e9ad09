// Bundled in place of `assert` for yargs' platform shim, which imports it for two checks that yargs
// makes on every run (they pass). Loading node:assert is ~25 internal modules (3-10 ms of every
// kocache start, measured with --cpu-prof on a cache hit); here it loads only to report a failed
// check. Both checks compare with Object.is, as node:assert does.
let real;
const load = () => (real ??= require('node:assert'));

export function notStrictEqual(actual, expected, message) {
  if (!Object.is(actual, expected)) return;
  load().notStrictEqual(actual, expected, message);
}

export function strictEqual(actual, expected, message) {
  if (Object.is(actual, expected)) return;
  load().strictEqual(actual, expected, message);
}
