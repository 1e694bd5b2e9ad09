import type cacacheApi from 'cacache';

export type Cacache = typeof cacacheApi;

let loaded: Promise<Cacache> | undefined;

/**
 * cacache's public entry, loaded on first use: commands that never touch the index (help, a
 * usage error, a push of a docker-archive) do not pay for evaluating it.
 */
export function loadCacache(): Promise<Cacache> {
  return (loaded ??= import('cacache').then((m) => m.default));
}
