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
}

export type LogFormat = "json" | "text";

export interface Logger {
  readonly format: LogFormat;
  access(rec: RequestRecord): void;
  /** An event line: `kind` like "health", "eject", "reload", "admin", "listen". */
  event(kind: string, message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
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

export interface LoggerOptions {
  format: LogFormat;
  access: boolean;
  /** Where lines go (default: stdout, written synchronously so lines never interleave). */
  write?: (line: string) => void;
}

export function createLogger(opts: LoggerOptions): Logger {
  const write = opts.write ?? ((line: string) => {
    try {
      Deno.stdout.writeSync(enc.encode(line + "\n"));
    } catch {
      // stdout closed (e.g. a pipe whose reader left): logging must never break serving.
    }
  });
  const json = opts.format === "json";
  return {
    format: opts.format,
    access(rec) {
      if (!opts.access) return;
      if (json) {
        write(JSON.stringify({ type: "access", ...rec, time: new Date(rec.time).toISOString() }));
      } else {
        const c = statusColour(rec.status);
        write(
          `${
            new Date(rec.time).toISOString()
          } ${c}${rec.status}\x1b[0m ${rec.method} ${rec.path} → ${rec.backend ?? "-"} ` +
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
