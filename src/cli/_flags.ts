/** Shared command-line plumbing: parseArgs with one-line errors, number and list parsing. */
import { parseArgs, type ParseArgsConfig } from "node:util";

/** A bad command line: printed as one line plus the usage hint, exit code 2. */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

type Options = NonNullable<ParseArgsConfig["options"]>;

/** parseArgs in strict mode; its errors become a UsageError with a short message. */
export function parseFlags<O extends Options>(args: string[], options: O, command: string) {
  try {
    return parseArgs({
      args,
      options: { help: { type: "boolean", short: "h" }, ...options },
      strict: true,
      allowPositionals: true,
    });
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0]
      .replace(/^Unknown option '(.+?)'.*$/, "unknown flag $1")
      .replace(/^Option '(.+?)' argument missing.*$/, "missing value for $1")
      .replace(/^Option '(?:-\w, )?(.+?) <value>' argument missing.*$/, "missing value for $1")
      .replace(
        /^Option '(?:-\w, )?(.+?)' does not take an argument.*$/,
        "$1 does not take a value",
      );
    throw new UsageError(msg, command);
  }
}

/** Rejects positional arguments a command does not take. */
export function noPositionals(positionals: string[], command: string): void {
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`, command);
}

/** A whole number within [min, max], or a UsageError naming the flag. */
export function intFlag(
  v: string | undefined,
  flag: string,
  command: string,
  min: number,
  max: number,
): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) {
    throw new UsageError(
      `${flag} must be a whole number from ${min} to ${max}, got "${v}"`,
      command,
    );
  }
  return Number(v);
}

/** `--log-format`: json or text. */
export function logFormatFlag(v: string | undefined, command: string): "json" | "text" | undefined {
  if (v === undefined || v === "json" || v === "text") return v;
  throw new UsageError(`--log-format must be json or text, got "${v}"`, command);
}

/** A comma list of numbers within [min, max] (e.g. `5,50,200`). */
export function numberListFlag(
  v: string | undefined,
  flag: string,
  command: string,
  min: number,
  max: number,
): number[] | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(",");
  return parts.map((p) => {
    const n = Number(p.trim());
    if (p.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
      throw new UsageError(
        `${flag} takes numbers from ${min} to ${max}, comma-separated; got "${v}"`,
        command,
      );
    }
    return n;
  });
}

/** One subcommand of `lb`: its help text and what it does. `run` resolves to the exit code. */
export interface Command {
  name: string;
  /** One line for `lb --help`. */
  summary: string;
  /** The full `lb <command> --help` text. */
  usage: string;
  run(args: string[]): Promise<number>;
}
