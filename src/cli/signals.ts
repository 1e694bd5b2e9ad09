import { removeTrackedTempFiles } from '../util/tmpfile.js';
import { clearDrawnProgress } from './output.js';

const SIGNAL_NUMBERS = { SIGINT: 2, SIGTERM: 15 } as const;

/**
 * Ctrl-C or a CI runner's SIGTERM: the command's temp files are removed, then the process exits
 * the way a shell reports a signal (128 + its number). Exiting runs the 'exit' listeners, which
 * release the cache lease and remove a throwaway cache; Node's default for these signals ends
 * the process without running them. Blobs and records are renamed into place only when whole,
 * so nothing else needs undoing.
 */
export function exitCleanlyOnSignals(): void {
  for (const [name, n] of Object.entries(SIGNAL_NUMBERS)) {
    process.once(name, () => {
      try {
        clearDrawnProgress();
        removeTrackedTempFiles();
      } finally {
        process.exit(128 + n);
      }
    });
  }
}
