/**
 * lb.yaml → a validated Config: YAML with positions, the schema, and problems named by
 * field path (or line and column), one line each.
 */
import YAML from "yaml";
import type { z } from "zod";
import DEFAULT_CONFIG_YAML from "../../lb.yaml" with { type: "text" };
import { type Config, ConfigSchema } from "./schema.ts";

export { DEFAULT_CONFIG_YAML };

import { BUILT_IN } from "./paths.ts";

export { BUILT_IN, configRelative } from "./paths.ts";

/** A config that could not be loaded: every problem, one per line, ready to print. */
export class ConfigError extends Error {
  constructor(readonly source: string, readonly problems: string[]) {
    // One problem fits on one line; several get one line each.
    super(
      problems.length === 1
        ? `${source}: ${problems[0]}`
        : `${source}: ${problems.length} problems:\n  ${problems.join("\n  ")}`,
    );
  }
}

/** A field path as lb.yaml writes it: `backends[2].url`, or `pools["a b"]` for an odd key. */
export function formatPath(path: (string | number)[]): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (!PLAIN_KEY.test(p)) out += `[${quoted(p)}]`;
    else out += out ? `.${p}` : p;
  }
  return out || "(top level)";
}

/** A key that reads plainly after a dot: 1-64 printable characters, no space, dot, bracket or quote. */
// deno-lint-ignore no-control-regex
const PLAIN_KEY = /^[^\s.\[\]"\x00-\x1f\x7f]{1,64}$/;

/** A key quoted on one line, cut after `max` characters. */
function quoted(s: string, max = 64): string {
  return oneLine(JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s));
}

const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/** `s` with line breaks and other control characters escaped as in JSON, so it stays one line. */
function oneLine(s: string): string {
  return s.replace(
    // deno-lint-ignore no-control-regex
    /[\x00-\x1f\x7f\u2028\u2029]/g,
    (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/** Checks `raw` against `schema`; problems are lines like `backends[0].url: …`. */
export function schemaProblems<T>(
  schema: z.ZodType<T, z.ZodTypeDef, unknown>,
  raw: unknown,
): { data: T } | { problems: string[] } {
  const r = schema.safeParse(raw);
  if (r.success) return { data: r.data };
  return { problems: r.error.issues.map(describeIssue) };
}

function describeIssue(i: z.ZodIssue): string {
  if (i.code === "unrecognized_keys") {
    const where = i.path.length ? `${formatPath(i.path)}: ` : "";
    const keys = i.keys.map((k) => quoted(k)).join(", ");
    return `${where}unknown key${i.keys.length > 1 ? "s" : ""} ${keys}`;
  }
  // Messages may quote the offending value: keep a pasted blob from flooding the terminal.
  // A message may quote the key or value too (a regex's own error does): on one line.
  const msg = oneLine(i.message.length > 200 ? `${i.message.slice(0, 200)}…` : i.message);
  return `${formatPath(i.path)}: ${msg}`;
}

/** Validates an already-parsed object. */
export function validateConfig(raw: unknown, source = "config"): Config {
  const r = schemaProblems(ConfigSchema, raw ?? {});
  if ("problems" in r) throw new ConfigError(source, r.problems);
  return r.data;
}

/** Parses YAML text into a Config; YAML syntax errors name line and column. */
export function parseConfig(text: string, source = "config"): Config {
  const lineCounter = new YAML.LineCounter();
  const doc = YAML.parseDocument(text, { prettyErrors: true, uniqueKeys: true, lineCounter });
  if (doc.errors.length) {
    throw new ConfigError(source, doc.errors.map((e) => yamlProblem(doc, e, lineCounter)));
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // e.g. a "billion laughs" alias bomb: yaml refuses to expand it.
    throw new ConfigError(source, [`the YAML cannot be expanded: ${(e as Error).message}`]);
  }
  if (raw !== null && raw !== undefined && (typeof raw !== "object" || Array.isArray(raw))) {
    throw new ConfigError(source, ["the file must be a YAML mapping (key: value lines)"]);
  }
  return validateConfig(raw, source);
}

/**
 * One YAML error as a line. The parser reports an unclosed `[`, `{` or quote where it gave
 * up (often the end of the file); the line that matters is where the construct opened, so
 * that is named first when a flow collection or quoted string spans the error.
 */
function yamlProblem(doc: YAML.Document, e: YAML.YAMLError, lines: YAML.LineCounter): string {
  const msg = e.message.split("\n")[0].replace(/ at line \d+, column \d+.*$/, "");
  const at = e.linePos?.[0];
  if (!at) return msg;
  const opened = openedBefore(doc, e.pos[0]);
  if (opened === undefined) return `line ${at.line}, column ${at.col}: ${msg}`;
  const o = lines.linePos(opened);
  return `line ${o.line}, column ${o.col}: ${msg} (opened here, still open at line ${at.line}, column ${at.col})`;
}

/** Offset of the outermost flow collection or quoted scalar that starts before `pos` and runs to it. */
function openedBefore(doc: YAML.Document, pos: number): number | undefined {
  let start: number | undefined;
  YAML.visit(doc, (_key, node) => {
    const spans = (YAML.isCollection(node) && node.flow) ||
      (YAML.isScalar(node) && (node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE"));
    const r = (node as YAML.Node | null)?.range;
    if (spans && r && r[0] < pos && r[2] >= pos && (start === undefined || r[0] < start)) {
      start = r[0];
    }
  });
  return start;
}

/**
 * Loads the config: `path` if given (must exist), else ./lb.yaml when present,
 * else the embedded default. Returns the config and where it came from.
 */
export async function loadConfig(path?: string): Promise<{ config: Config; source: string }> {
  const file = path ?? "lb.yaml";
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (path === undefined && e instanceof Deno.errors.NotFound) {
      return { config: parseConfig(DEFAULT_CONFIG_YAML, BUILT_IN), source: BUILT_IN };
    }
    throw new ConfigError(file, [`cannot read the config file: ${readProblem(e)}`]);
  }
  return { config: parseConfig(text, file), source: file };
}

/** Why a file could not be read, in a few words. */
export function readProblem(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  return e instanceof Error ? e.message : String(e);
}
