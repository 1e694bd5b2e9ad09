import { KocacheError } from '../errors.js';
import { causeCode, errnoHint } from './hints.js';

export interface OutputOptions {
  json: boolean;
  quiet: boolean;
}

/**
 * Where everything a command says goes: results on stdout (one JSON object with --json),
 * warnings and progress on stderr. Progress is drawn only on a terminal and never in CI.
 */
export class Output {
  private lastDraw = 0;
  private drawn = false;
  private progressOn: boolean | undefined;

  /**
   * stderr is looked at only when there is something to say: making process.stderr loads Node's
   * socket code when it is a pipe or a terminal (docs/performance.md), and a cache hit says nothing there.
   */
  constructor(readonly opts: OutputOptions) {}

  private get stderr(): NodeJS.WriteStream {
    return process.stderr;
  }

  /**
   * On a terminal outside CI (inCi), unless KOCACHE_PROGRESS=never; KOCACHE_PROGRESS=always draws it on
   * any stderr (a log that keeps carriage returns, a test).
   */
  get showProgress(): boolean {
    const want = process.env.KOCACHE_PROGRESS;
    return (this.progressOn ??= !this.opts.json && !this.opts.quiet && want !== 'never' && (want === 'always' || (Boolean(this.stderr.isTTY) && !inCi())));
  }

  warn(message: string): void {
    this.clearProgress();
    this.stderr.write(`kocache: warning: ${message}\n`);
  }

  info(message: string): void {
    if (this.opts.quiet || this.opts.json) return;
    this.clearProgress();
    this.stderr.write(`${message}\n`);
  }

  /**
   * A one-line status, redrawn at most ten times a second. Given as a function, the text is made
   * only when it is drawn: progress is reported per file or chunk, and formatting it every time
   * for a terminal that is not there was measurable in a cold build.
   */
  progress(text: string | (() => string)): void {
    if (!this.showProgress) return;
    const now = Date.now();
    if (now - this.lastDraw < 100) return;
    this.lastDraw = now;
    // Cut to the terminal's width, so a long line never wraps and breaks the redraw; a log keeps all.
    const width = this.stderr.isTTY ? (this.stderr.columns || 80) - 1 : Infinity;
    const line = typeof text === 'function' ? text() : text;
    this.stderr.write(`\r\x1b[K${line.slice(0, width)}`);
    this.drawn = true;
    drawing = this;
  }

  /** Draws now, whatever the rate limit (a ticking clock, a new phase). */
  redraw(text: () => string): void {
    this.lastDraw = 0;
    this.progress(text);
  }

  clearProgress(): void {
    if (!this.drawn) return;
    this.stderr.write('\r\x1b[K');
    this.drawn = false;
    if (drawing === this) drawing = undefined;
  }

  /** The command's result. With --json, one JSON line; else the given text lines. */
  result(value: unknown, text?: string): void {
    this.clearProgress();
    if (this.opts.json || text === undefined) process.stdout.write(`${JSON.stringify(value)}\n`);
    else process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }
}

/** `CI` set, to anything but what says no (`CI=false`, as some set it to say so, or `0`). */
function inCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0';
}

/** The Output whose progress line is on the terminal now, if any. */
let drawing: Output | undefined;

/** Clears the progress line drawn, if any: a command stopped by a signal leaves the terminal clean. */
export function clearDrawnProgress(): void {
  drawing?.clearProgress();
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}

/** A user error becomes one line; anything else is a bug, reported as one line too (stack with KOCACHE_DEBUG=1). */
export function reportError(err: unknown, json: boolean): number {
  const debug = Boolean(process.env.KOCACHE_DEBUG);
  // On a line of its own: a failing warm left "…38.2 MiB fetchedkocache: …" on the terminal.
  clearDrawnProgress();
  if (err instanceof KocacheError) {
    const hint = errnoHint(causeCode(err), err.message);
    const message = hint ? `${err.message} (${hint})` : err.message;
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: err.code, message } })}\n`);
    process.stderr.write(`kocache: ${oneLine(message)}\n`);
    if (debug && err.cause) process.stderr.write(`${String((err.cause as Error).stack ?? err.cause)}\n`);
    return err.exitCode;
  }
  const sys = systemError(err);
  if (sys) {
    // A file-system error no caller put words to is still the machine's state, not a bug: one line.
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'fs', message: sys } })}\n`);
    process.stderr.write(`kocache: ${oneLine(sys)}\n`);
    return 1;
  }
  const message = err instanceof Error ? err.message : String(err);
  // A system error that reached here unwrapped (a disk filling up under a library) is the
  // machine's state, not a bug: said as one line, with what to do when that is known.
  const code = causeCode(err);
  if (code !== undefined) {
    const hint = errnoHint(code, message);
    const text = hint ? `${message} (${hint})` : message;
    if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'fs', message: text } })}\n`);
    process.stderr.write(`kocache: ${oneLine(text)}\n`);
    if (debug && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
  if (json) process.stdout.write(`${JSON.stringify({ error: { code: 'internal', message } })}\n`);
  process.stderr.write(`kocache: internal error: ${oneLine(message)}${debug ? '' : ' (set KOCACHE_DEBUG=1 for details)'}\n`);
  if (debug && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return 70;
}

/** Node's system errors (ENOSPC, EACCES...) carry the call and the path: said as `cannot open PATH: ...`. */
function systemError(err: unknown): string | undefined {
  const e = err as { code?: unknown; syscall?: unknown; path?: unknown; message?: unknown } | null;
  if (typeof e !== 'object' || e === null || typeof e.code !== 'string' || !/^E[A-Z0-9]+$/.test(e.code) || typeof e.syscall !== 'string') return undefined;
  const what = typeof e.path === 'string' ? `${e.syscall} ${e.path}` : e.syscall;
  return `cannot ${what}: ${typeof e.message === 'string' ? e.message : e.code}`;
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}
