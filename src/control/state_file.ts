/**
 * The state file: what the admin API changed, kept as an overlay on the config file so the
 * changes survive a restart. Deleting the file returns lb to the config file.
 *
 * The file holds a difference, not a copy: servers added through the API, config servers
 * removed through it, weights and admin states that differ from the config, and the
 * strategy when it was switched. Because it is a difference, edits to lb.yaml still take
 * effect for everything the API did not touch.
 *
 * Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
 * directory), so a crash leaves either the old file or the new one, never half of one.
 *
 * @example
 * ```json
 * {
 *   "version": 1,
 *   "added": [{ "url": "http://127.0.0.1:9004", "name": "backend-4", "weight": 2 }],
 *   "removed": ["backend-3"],
 *   "changed": { "backend-1": { "weight": 5 }, "backend-2": { "state": "disabled" } },
 *   "strategy": { "name": "least-conn" }
 * }
 * ```
 */
import { basename, dirname, isAbsolute, join } from "node:path";
import { z } from "zod";
import type { Config } from "../config/config.ts";
import { parseBackendUrl, type Server } from "../balancing/pool.ts";
import { STRATEGY_NAMES } from "../balancing/strategies/registry.ts";

export type AdminState = "enabled" | "disabled" | "draining";

const SERVER_NAME = /^[A-Za-z0-9._:-]+$/;
const weight = z.number().int().min(1).max(1000);
const adminState = z.enum(["enabled", "disabled", "draining"]);
const url = z.string().superRefine((v, ctx) => {
  try {
    parseBackendUrl(v);
  } catch (e) {
    ctx.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
  }
});

const OverlaySchema = z.object({
  version: z.literal(1),
  added: z.array(
    z.object({
      url,
      name: z.string().min(1).max(100).regex(SERVER_NAME).optional(),
      weight: weight.default(1),
      maxConnections: z.number().int().min(0).default(0),
      state: adminState.default("enabled"),
    }).strict(),
  ).default([]),
  removed: z.array(z.string()).default([]),
  changed: z.record(
    z.string(),
    z.object({ weight: weight.optional(), state: adminState.optional() }).strict(),
  ).default({}),
  strategy: z.object({
    name: z.string().refine((s) => STRATEGY_NAMES.includes(s), {
      message: `must be one of: ${STRATEGY_NAMES.join(", ")}`,
    }),
    hash: z.object({
      key: z.string().optional(),
      balanceFactor: z.number().optional(),
      vnodes: z.number().int().optional(),
      tableSize: z.number().int().optional(),
    }).strict().optional(),
  }).strict().optional(),
}).strict();

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
  const isFile = configSource !== undefined && configSource !== "built-in defaults";
  const dir = isFile ? dirname(configSource) : ".";
  const explicit = config.admin.stateFile;
  if (explicit) return isAbsolute(explicit) ? explicit : join(dir, explicit);
  if (configSource === undefined) return undefined;
  if (!isFile) return "lb.state.json";
  const name = basename(configSource).replace(/\.(ya?ml|json)$/i, "");
  return join(dir, `${name}.state.json`);
}

/** Reads the state file; undefined when there is none. Throws StateFileError when it is unusable. */
export function readStateFile(path: string): StateOverlay | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw new StateFileError(`cannot read the state file ${path}: ${(e as Error).message}`);
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
  const r = OverlaySchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i.path.length ? `${i.path.join(".")}: ` : "";
    const what = i.code === "unrecognized_keys" ? `unknown key "${i.keys[0]}"` : i.message;
    throw new StateFileError(`the state file ${path} is not usable (${where}${what}); ${fix}`);
  }
  return r.data;
}

/** A server's id as the pool computes it: configured name, else host:port. */
export function idOf(b: { url: string; name?: string }): string {
  const u = parseBackendUrl(b.url);
  return b.name ?? `${u.hostname}:${u.port || "80"}`;
}

function originOf(rawUrl: string): string {
  const u = parseBackendUrl(rawUrl);
  return `${u.protocol}//${u.host}`;
}

/** The config with the overlay applied, and the admin states to set on the pool's servers. */
export interface Applied {
  config: Config;
  adminStates: Map<string, AdminState>;
}

/** Applies a state overlay over a config (the config file's servers and strategy). */
export function applyOverlay(config: Config, overlay: StateOverlay | undefined): Applied {
  const adminStates = new Map<string, AdminState>();
  if (!overlay) return { config, adminStates };
  const removed = new Set(overlay.removed);
  const backends = config.backends.filter((b) => !removed.has(idOf(b))).map((b) => {
    const change = overlay.changed[idOf(b)];
    if (change?.state && change.state !== "enabled") adminStates.set(idOf(b), change.state);
    return change?.weight ? { ...b, weight: change.weight } : b;
  });
  for (const a of overlay.added) {
    const id = idOf(a);
    const origin = originOf(a.url);
    // Added through the API and since written into the config file: the file's entry wins.
    if (backends.some((b) => idOf(b) === id || originOf(b.url) === origin)) continue;
    backends.push({ url: a.url, name: a.name, weight: a.weight, maxConnections: a.maxConnections });
    if (a.state !== "enabled") adminStates.set(id, a.state);
  }
  const out: Config = { ...config, backends };
  if (overlay.strategy) {
    out.strategy = overlay.strategy.name;
    out.hash = { ...config.hash, ...overlay.strategy.hash };
  }
  return { config: out, adminStates };
}

/** What the running servers and strategy look like, for {@link diffOverlay}. */
export interface Current {
  servers: readonly Server[];
  strategy: string;
  hash: Config["hash"];
}

function adminStateOf(s: Server): AdminState {
  return !s.enabled ? "disabled" : s.draining ? "draining" : "enabled";
}

/** The overlay that turns `config` into `current`: what the state file must hold. */
export function diffOverlay(config: Config, current: Current): StateOverlay {
  const base = new Map(config.backends.map((b) => [idOf(b), b]));
  const overlay: StateOverlay = { version: 1, added: [], removed: [], changed: {} };
  const seen = new Set<string>();
  for (const s of current.servers) {
    const b = base.get(s.id);
    if (b && originOf(b.url) === s.url) {
      seen.add(s.id);
      const change: { weight?: number; state?: AdminState } = {};
      if (s.weight !== b.weight) change.weight = s.weight;
      if (adminStateOf(s) !== "enabled") change.state = adminStateOf(s);
      if (Object.keys(change).length) overlay.changed[s.id] = change;
      continue;
    }
    const u = new URL(s.url);
    const defaultId = `${u.hostname}:${u.port || "80"}`;
    overlay.added.push({
      url: s.url,
      ...(s.id !== defaultId && { name: s.id }),
      weight: s.weight,
      maxConnections: s.maxConnections,
      state: adminStateOf(s),
    });
  }
  for (const id of base.keys()) if (!seen.has(id)) overlay.removed.push(id);
  const h = current.hash;
  const sameHash = h.key === config.hash.key && h.balanceFactor === config.hash.balanceFactor &&
    h.vnodes === config.hash.vnodes && h.tableSize === config.hash.tableSize;
  if (current.strategy !== config.strategy || !sameHash) {
    overlay.strategy = { name: current.strategy, ...(!sameHash && { hash: { ...h } }) };
  }
  return overlay;
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
