/**
 * The state file: what the admin API changed, kept as an overlay on the config file so the
 * changes survive a restart (see overlay.ts for what it holds and how it applies). Deleting
 * the file returns lb to the config file.
 *
 * Its contents are checked by the same rules as lb.yaml (config/backend.ts and
 * config/strategy.ts): a file that lb.yaml's rules would refuse is refused at start, with
 * one line naming the file and the field.
 *
 * Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
 * directory), so a crash leaves either the old file or the new one, never half of one.
 *
 * @example
 * ```json
 * {
 *   "version": 2,
 *   "pools": {
 *     "default": {
 *       "added": [{ "url": "http://127.0.0.1:9004", "name": "backend-4", "weight": 2 }],
 *       "removed": ["backend-3"],
 *       "changed": { "backend-1": { "weight": 5 }, "backend-2": { "state": "disabled" } },
 *       "strategy": { "name": "least-conn" }
 *     }
 *   },
 *   "stickySecret": "…"
 * }
 * ```
 *
 * Version 1 (lb before pools: the one pool's fields at the top) is read as the pool
 * `default`; lb writes version 2.
 */
import { basename, dirname, join } from "node:path";
import { z } from "zod";
import { adminStateSchema, backendSchema, weightSchema } from "../config/backend.ts";
import { BUILT_IN, configRelative, readProblem, schemaProblems } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { hashOptionsSchema, strategyNameSchema } from "../config/strategy.ts";
import { DEFAULT_POOL } from "../config/pools.ts";
import { nameSchema } from "../config/routes.ts";

const PoolOverlaySchema = z.object({
  added: z.array(backendSchema.extend({ state: adminStateSchema.default("enabled") })).default([]),
  removed: z.array(z.string()).default([]),
  changed: z.record(
    z.string(),
    z.object({ weight: weightSchema.optional(), state: adminStateSchema.optional() }).strict(),
  ).default({}),
  strategy: z.object({ name: strategyNameSchema, hash: hashOptionsSchema.optional() }).strict()
    .optional(),
}).strict();

/** What the state file keeps for one pool. */
export type PoolOverlay = z.infer<typeof PoolOverlaySchema>;

const OverlaySchema = z.object({
  version: z.literal(2),
  pools: z.record(nameSchema, PoolOverlaySchema).default({}),
  stickySecret: z.string().min(16).optional(),
}).strict();

/** Version 1: the one pool's fields at the top level. */
const OverlaySchemaV1 = PoolOverlaySchema.extend({ version: z.literal(1) }).strict();

/** The contents of a state file. */
export type StateOverlay = z.infer<typeof OverlaySchema>;

/** A state file that exists but cannot be used: one line saying what to do. */
export class StateFileError extends Error {}

/**
 * Where the state file lives: `admin.stateFile` (relative paths are relative to the config
 * file's directory), else `<config name>.state.json` beside the config file, else
 * `./lb.state.json` when running on the built-in defaults. Undefined (no state file) for
 * an lb built in code without a config source, such as the tests'.
 */
export function resolveStateFilePath(
  config: Config,
  configSource: string | undefined,
): string | undefined {
  const explicit = config.admin.stateFile;
  if (explicit) return configRelative(explicit, configSource);
  if (configSource === undefined) return undefined;
  if (configSource === BUILT_IN) return "lb.state.json";
  const name = basename(configSource).replace(/\.(ya?ml|json)$/i, "");
  return configRelative(`${name}.state.json`, configSource);
}

/** Reads the state file; undefined when there is none. Throws StateFileError when it is unusable. */
export function readStateFile(path: string): StateOverlay | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new StateFileError(`cannot read the state file ${path}: ${readProblem(e)}`);
  }
  const fix = `fix it, or delete it to return to the config file`;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new StateFileError(
      `the state file ${path} is not valid JSON (${(e as Error).message}); ${fix}`,
    );
  }
  const v1 = (raw as { version?: unknown } | null)?.version === 1;
  const r = v1 ? schemaProblems(OverlaySchemaV1, raw) : schemaProblems(OverlaySchema, raw);
  if ("problems" in r) {
    throw new StateFileError(`the state file ${path} is not usable (${r.problems[0]}); ${fix}`);
  }
  if (!("pools" in r.data)) {
    const { version: _, ...pool } = r.data;
    return { version: 2, pools: { [DEFAULT_POOL]: pool } };
  }
  return r.data;
}

/**
 * Writes `overlay` to `path` atomically: a temp file in the same directory, written and
 * fsynced, renamed over the old file, then the directory fsynced so the rename survives a
 * power cut. Resolves only when all of that is done.
 */
export async function writeStateFile(path: string, overlay: StateOverlay): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${crypto.randomUUID().slice(0, 8)}.tmp`);
  const data = new TextEncoder().encode(JSON.stringify(overlay, null, 2) + "\n");
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
    try {
      let off = 0;
      while (off < data.length) off += await f.write(data.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`cannot write the state file ${path}: ${(e as Error).message}`);
  }
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Some file systems cannot fsync a directory; the rename itself has happened.
  }
}
