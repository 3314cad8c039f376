/**
 * Logs: one access line per request and event lines (health changes, ejections, reloads,
 * admin changes). JSON lines by default when stdout is not a terminal; a readable coloured
 * line on a terminal.
 */

/** What lb records about one request once it is over. */
export interface RequestRecord {
  /** When the request arrived (epoch ms); logs print it as an ISO 8601 time. */
  time: number;
  requestId: string;
  client: string;
  method: string;
  path: string;
  status: number;
  /** Id of the server that answered (or was tried last); undefined when none was tried. */
  backend?: string;
  tries: number;
  durationMs: number;
  bytesIn: number;
  bytesOut: number;
  /** Why lb answered with an error or the response was cut, when it did. */
  error?: string;
  /** Request headers left out because their names had `_` (see `underscoreHeaders`). */
  droppedHeaders?: number;
  /** The pool and route the request went to; undefined when no route matched. */
  pool?: string;
  route?: string;
}

export type LogFormat = "json" | "text";

export interface Logger {
  readonly format: LogFormat;
  access(rec: RequestRecord): void;
  /** An event line: `kind` like "health", "eject", "reload", "admin", "listen". */
  event(kind: string, message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
  /** Writes out access lines still waiting in the batch (at shutdown). */
  flush(): void;
}

/** `pool/` before the backend in a text access line, unless it is the one pool `default`. */
function poolOf(rec: RequestRecord): string {
  return rec.pool === undefined || rec.pool === "default" ? "" : `${rec.pool}/`;
}

/** `auto` means text on a terminal, JSON otherwise. */
export function resolveFormat(f: "auto" | LogFormat): LogFormat {
  if (f !== "auto") return f;
  try {
    return Deno.stdout.isTerminal() ? "text" : "json";
  } catch {
    return "json";
  }
}

const enc = new TextEncoder();

function statusColour(status: number): string {
  return status >= 500
    ? "\x1b[31m"
    : status >= 400
    ? "\x1b[33m"
    : status >= 300
    ? "\x1b[36m"
    : "\x1b[32m";
}

/** The last access time formatted, and its ISO 8601 form: a busy lb logs many per ms. */
let lastTime = NaN;
let lastIso = "";

function isoTime(ms: number): string {
  if (ms !== lastTime) {
    lastIso = new Date(ms).toISOString();
    lastTime = ms;
  }
  return lastIso;
}

const q = JSON.stringify;

/**
 * An access record as one JSON line: the fields in the record's order, `time` as ISO 8601,
 * and the optional ones only when set, exactly what `JSON.stringify({type: "access", ...rec})`
 * wrote, for a quarter of its cost (1.2 → 0.27 µs in `deno bench`; object spread and
 * stringifying the whole object were most of it). The numbers are finite counts and times.
 */
function accessJson(rec: RequestRecord): string {
  let s = `{"type":"access","time":"${isoTime(rec.time)}","requestId":${q(rec.requestId)},` +
    `"client":${q(rec.client)},"method":${q(rec.method)},"path":${q(rec.path)},` +
    `"status":${rec.status},"tries":${rec.tries},"durationMs":${rec.durationMs},` +
    `"bytesIn":${rec.bytesIn},"bytesOut":${rec.bytesOut}`;
  if (rec.backend !== undefined) s += `,"backend":${q(rec.backend)}`;
  if (rec.error !== undefined) s += `,"error":${q(rec.error)}`;
  if (rec.droppedHeaders !== undefined) s += `,"droppedHeaders":${rec.droppedHeaders}`;
  if (rec.pool !== undefined) s += `,"pool":${q(rec.pool)}`;
  if (rec.route !== undefined) s += `,"route":${q(rec.route)}`;
  return s + "}";
}

export interface LoggerOptions {
  format: LogFormat;
  access: boolean;
  /**
   * Where lines go, one call per line (tests). Default: stdout, written synchronously, with
   * access lines batched (see {@link AccessBatch}).
   */
  write?: (line: string) => void;
}

function writeStdout(text: string): void {
  try {
    Deno.stdout.writeSync(enc.encode(text));
  } catch {
    // stdout closed (e.g. a pipe whose reader left): logging must never break serving.
  }
}

/** Bytes of access lines written at once: PIPE_BUF, so one write to a pipe is atomic. */
const BATCH_BYTES = 4096;
/** Longest an access line waits in the batch. */
const BATCH_MS = 50;

/**
 * Access lines collected and written together: one synchronous write per line cost lb a
 * third of its throughput (7.9k vs 12.6k req/s in one benchmark run). A batch is written
 * when the next line would take it past {@link BATCH_BYTES}, after {@link BATCH_MS}, or
 * before any event or error line, so lines keep their order. Several `--workers` share
 * stdout; writes of at most PIPE_BUF bytes never interleave mid-line on a pipe.
 */
class AccessBatch {
  #text = "";
  #timer: ReturnType<typeof setTimeout> | undefined;

  add(line: string): void {
    if (this.#text.length + line.length + 1 > BATCH_BYTES) this.flush();
    this.#text += line + "\n";
    if (this.#timer === undefined) {
      this.#timer = setTimeout(() => this.flush(), BATCH_MS);
      // A batch alone never keeps the process alive; shutdown flushes it.
      (this.#timer as unknown as { unref(): void }).unref();
    }
  }

  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#text === "") return;
    const text = this.#text;
    this.#text = "";
    writeStdout(text);
  }
}

export function createLogger(opts: LoggerOptions): Logger {
  const batch = opts.write ? undefined : new AccessBatch();
  const write = opts.write ?? ((line: string) => {
    batch?.flush();
    writeStdout(line + "\n");
  });
  const accessLine = opts.write ?? ((line: string) => batch!.add(line));
  const json = opts.format === "json";
  return {
    format: opts.format,
    flush: () => batch?.flush(),
    access(rec) {
      if (!opts.access) return;
      if (json) {
        accessLine(accessJson(rec));
      } else {
        const c = statusColour(rec.status);
        accessLine(
          `${isoTime(rec.time)} ${c}${rec.status}\x1b[0m ${rec.method} ${rec.path} → ${
            poolOf(rec)
          }${rec.backend ?? "-"} ` +
            `${
              rec.durationMs.toFixed(1)
            }ms tries=${rec.tries} in=${rec.bytesIn} out=${rec.bytesOut} ` +
            `client=${rec.client} id=${rec.requestId}${
              rec.error ? ` \x1b[31m${rec.error}\x1b[0m` : ""
            }`,
        );
      }
    },
    event(kind, message, fields) {
      if (json) {
        write(
          JSON.stringify({
            type: "event",
            time: new Date().toISOString(),
            kind,
            message,
            ...fields,
          }),
        );
      } else write(`${new Date().toISOString()} \x1b[35m${kind}\x1b[0m ${message}`);
    },
    error(message, fields) {
      if (json) {
        write(
          JSON.stringify({ type: "error", time: new Date().toISOString(), message, ...fields }),
        );
      } else write(`${new Date().toISOString()} \x1b[31merror\x1b[0m ${message}`);
    },
  };
}
