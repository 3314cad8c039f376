/**
 * The shared view as Redis holds it: one hash field per thing an operator changed, so two
 * instances changing two different servers at once never overwrite each other.
 *
 * | field                            | value                                                  |
 * | -------------------------------- | ------------------------------------------------------ |
 * | `["web","server","backend-1"]`   | `{"url":…,"name":…,"weight":5,"maxConnections":0,"state":"enabled"}` |
 * | `["web","server","backend-3"]`   | `{"removed":true}` (a config server taken out)          |
 * | `["web","strategy"]`             | `{"name":"least-conn"}` (optionally `hash`)             |
 * | `["stickySecret"]`               | `"…"` (the sticky cookies' generated key)               |
 *
 * Values are absolute (a server's whole record, not a difference), so every instance with
 * the same lb.yaml derives the same state file overlay from them (records → overlay below),
 * and Redis is never trusted: each field and value is checked with the state file's and the
 * admin API's schemas, and a bad one is skipped.
 */
import { z } from "zod";
import {
  adminStateSchema,
  backendIdentity,
  backendSchema,
  type BackendSpec,
} from "../config/backend.ts";
import { resolvePools } from "../config/pools.ts";
import { nameSchema } from "../config/routes.ts";
import type { Config } from "../config/schema.ts";
import { hashOptionsSchema, strategyNameSchema } from "../config/strategy.ts";
import type { PoolOverlay, StateOverlay } from "../control/state_file.ts";

const removedRecord = z.object({ removed: z.literal(true) }).strict();
const liveRecord = backendSchema.extend({ state: adminStateSchema }).strict();
const serverRecord = z.union([removedRecord, liveRecord]);
const strategyRecord = z.object({ name: strategyNameSchema, hash: hashOptionsSchema.optional() })
  .strict();

const fieldSchema = z.union([
  z.tuple([nameSchema, z.literal("server"), z.string().min(1).max(100)]),
  z.tuple([nameSchema, z.literal("strategy")]),
  z.tuple([z.literal("stickySecret")]),
]);

export type ServerRecord = z.infer<typeof serverRecord>;
export type StrategyRecord = z.infer<typeof strategyRecord>;

/** One checked field of the view. */
export type ViewEntry =
  | { kind: "server"; pool: string; id: string; value: ServerRecord }
  | { kind: "strategy"; pool: string; value: StrategyRecord }
  | { kind: "stickySecret"; value: string };

/** The view: canonical field → its checked entry. */
export type View = Map<string, ViewEntry>;

/** The field name of an entry (a JSON array, so names never need escaping). */
function fieldOf(e: ViewEntry): string {
  if (e.kind === "server") return JSON.stringify([e.pool, "server", e.id]);
  if (e.kind === "strategy") return JSON.stringify([e.pool, "strategy"]);
  return JSON.stringify(["stickySecret"]);
}

/** An entry's value as stored: JSON with keys in one order, so equal records compare equal. */
export function valueOf(e: ViewEntry): string {
  const v = e.value;
  if (typeof v === "string") return JSON.stringify(v);
  if ("removed" in v) return '{"removed":true}';
  if ("url" in v) {
    const { url, name, weight, maxConnections, state } = v;
    return JSON.stringify({ url, ...(name && { name }), weight, maxConnections, state });
  }
  return JSON.stringify({ name: v.name, ...(v.hash && { hash: v.hash }) });
}

/**
 * Checks one field and its value as read from Redis: the entry, or the reason it is
 * refused (logged by the caller, never thrown).
 */
export function parseEntry(field: string, raw: string): ViewEntry | { problem: string } {
  let key: unknown, value: unknown;
  try {
    key = JSON.parse(field);
    value = JSON.parse(raw);
  } catch {
    return { problem: `field ${field}: not JSON` };
  }
  const f = fieldSchema.safeParse(key);
  if (!f.success) return { problem: `field ${field}: not a field lb writes` };
  const [pool, kind, id] = f.data;
  const checked = (r: z.SafeParseReturnType<unknown, unknown>) => {
    if (r.success) return undefined;
    const { path, message } = r.error.issues[0];
    return `field ${field}: ${path.length ? `${path.join(".")}: ` : ""}${message}`;
  };
  if (kind === "server") {
    const removal = typeof value === "object" && value !== null && "removed" in value;
    const r = (removal ? removedRecord : liveRecord).safeParse(value);
    return r.success ? { kind, pool, id: id!, value: r.data } : { problem: checked(r)! };
  }
  if (kind === "strategy") {
    const r = strategyRecord.safeParse(value);
    return r.success ? { kind, pool, value: r.data } : { problem: checked(r)! };
  }
  const r = z.string().min(16).safeParse(value);
  return r.success ? { kind: "stickySecret", value: r.data } : { problem: checked(r)! };
}

/** Adds an entry to a view under its canonical field. */
export function put(view: View, e: ViewEntry): void {
  view.set(fieldOf(e), e);
}

/** The view that a state file overlay over `config` amounts to. */
export function viewOfOverlay(config: Config, overlay: StateOverlay): View {
  const view: View = new Map();
  const pools = new Map(resolvePools(config).map((p) => [p.name, p]));
  for (const [pool, o] of Object.entries(overlay.pools)) {
    const base = byId(pools.get(pool)?.backends ?? []);
    for (const id of o.removed) put(view, { kind: "server", pool, id, value: { removed: true } });
    for (const [id, change] of Object.entries(o.changed)) {
      const b = base.get(id);
      if (!b) continue;
      const value = { ...record(b), weight: change.weight ?? b.weight };
      put(view, {
        kind: "server",
        pool,
        id,
        value: { ...value, state: change.state ?? "enabled" },
      });
    }
    for (const { state, ...a } of o.added) {
      const id = backendIdentity(a).id;
      put(view, { kind: "server", pool, id, value: { ...record(a), state } });
    }
    if (o.strategy) put(view, { kind: "strategy", pool, value: o.strategy });
  }
  if (overlay.stickySecret) put(view, { kind: "stickySecret", value: overlay.stickySecret });
  return view;
}

/** A pool's backends by id. */
function byId(backends: BackendSpec[]): Map<string, BackendSpec> {
  return new Map(backends.map((b) => [backendIdentity(b).id, b]));
}

function record(b: BackendSpec) {
  return {
    url: backendIdentity(b).origin,
    ...(b.name && { name: b.name }),
    weight: b.weight,
    maxConnections: b.maxConnections,
  };
}

/**
 * The state file overlay that `view` amounts to over `config`: what an instance applies
 * (through the same reload path as the state file). Entries for pools this config does not
 * have are left out.
 */
export function overlayOfView(config: Config, view: View): StateOverlay {
  const pools = new Map(resolvePools(config).map((p) => [p.name, byId(p.backends)]));
  const out: StateOverlay = { version: 2, pools: {} };
  const poolOf = (name: string): PoolOverlay =>
    out.pools[name] ??= { added: [], removed: [], changed: {} };
  for (const e of view.values()) {
    if (e.kind === "stickySecret") {
      out.stickySecret = e.value;
      continue;
    }
    const pool = pools.get(e.pool);
    if (!pool) continue;
    if (e.kind === "strategy") {
      poolOf(e.pool).strategy = e.value;
      continue;
    }
    const base = pool.get(e.id);
    const v = e.value;
    if ("removed" in v) {
      if (base) poolOf(e.pool).removed.push(e.id);
      continue;
    }
    if (base && backendIdentity(base).origin === backendIdentity(v).origin) {
      const change: { weight?: number; state?: "disabled" | "draining" } = {};
      if (v.weight !== base.weight) change.weight = v.weight;
      if (v.state !== "enabled") change.state = v.state;
      if (Object.keys(change).length) poolOf(e.pool).changed[e.id] = change;
      continue;
    }
    poolOf(e.pool).added.push(v);
  }
  return out;
}

/**
 * The field writes that turn `from` into `to` (value "" deletes the field): entries of pools
 * `config` does not know are left alone (another instance's), and the sticky secret is
 * never deleted.
 */
export function diffViews(config: Config, from: View, to: View): [string, string][] {
  const known = new Set(resolvePools(config).map((p) => p.name));
  const out: [string, string][] = [];
  for (const [field, e] of to) {
    const was = from.get(field);
    if (!was || valueOf(was) !== valueOf(e)) out.push([field, valueOf(e)]);
  }
  for (const [field, e] of from) {
    if (to.has(field) || e.kind === "stickySecret" || !known.has(e.pool)) continue;
    out.push([field, ""]);
  }
  return out;
}
