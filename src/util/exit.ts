// What is due when the process exits (a lease to release, a throwaway cache to remove), run by one
// 'exit' listener: with a listener each, a library caller holding more than ten caches open got
// Node's warning of a leak on its stderr.
const due = new Set<() => void>();
let listening = false;

/** Runs `fn` when the process exits, unless the returned function is called first. */
export function atExit(fn: () => void): () => void {
  if (!listening) {
    listening = true;
    process.once('exit', () => {
      // Each one, whatever another does: a lease that cannot be removed must not leave a
      // throwaway cache behind, nor end the process with a stack trace.
      for (const f of [...due]) {
        try {
          f();
        } catch {}
      }
    });
  }
  due.add(fn);
  return () => {
    due.delete(fn);
  };
}
