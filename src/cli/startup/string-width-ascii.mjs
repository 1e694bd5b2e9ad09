// Bundled in place of `string-width` (yargs and its cliui measure every help row with it, and
// yargs builds the help text before running any command). The real module compiles a
// \p{RGI_Emoji} regular expression and an Intl.Segmenter as it loads, on every kocache start
// (the register in docs/performance.md), for text that is plain ASCII. A printable-ASCII string
// is as wide as it is long, so only other strings load the real module; esbuild turns this
// require() into a lazy initialiser.
let real;

export default function stringWidth(string, options) {
  if (typeof string === 'string' && /^[\x20-\x7e]*$/.test(string)) return string.length;
  real ??= require('string-width').default;
  return real(string, options);
}
