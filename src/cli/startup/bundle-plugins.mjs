// esbuild plugins for the CLI bundle (scripts/bundle-cli.mjs): start-up measures that change what
// a dependency loads inside the bundle only. Each is in the register, docs/performance.md.
import { fileURLToPath } from 'node:url';

const asciiWidth = fileURLToPath(new URL('./string-width-ascii.mjs', import.meta.url));

/**
 * Every `string-width` import but the stand-in's own resolves to the stand-in (see
 * string-width-ascii.mjs): yargs' help layout measures each row with it, and the real module
 * compiles an emoji regular expression and an Intl.Segmenter as it loads.
 */
export const asciiStringWidth = {
  name: 'ascii-string-width',
  setup(b) {
    b.onResolve({ filter: /^string-width$/ }, (args) => (args.importer === asciiWidth ? undefined : { path: asciiWidth }));
  },
};

export const startupPlugins = [asciiStringWidth];
