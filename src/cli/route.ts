/**
 * `lb route METHOD URL`: explains what lb would do with a request (routing/explain.ts). It
 * asks the running lb's admin API when it answers, so the pick reflects live health,
 * drains and load; otherwise it builds the pools from the config file and its state file,
 * with every server as the config says (no health results), and says so.
 */
import { resolveAdminToken } from "../admin/auth.ts";
import { loadConfig } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { restoreAdminStates } from "../control/control.ts";
import { applyStateFile } from "../control/overlay.ts";
import { readStateFile, resolveStateFilePath } from "../control/state_file.ts";
import {
  explain,
  type ExplainInput,
  explainRequestOf,
  type Explanation,
} from "../routing/explain.ts";
import { Pools } from "../routing/pools.ts";
import { newStickySecret } from "../routing/sticky.ts";
import { type Command, parseFlags, UsageError } from "./_flags.ts";

const USAGE = `Usage: lb route [flags] METHOD URL

Explains a request: the route that matches, its pool, the path the backend would see,
the headers the route adds or removes, its rate limit, the sticky cookie, and the server
the strategy would pick now. Asks the running lb (its admin API) when it answers; else
explains from the config file and its state file, with every server as configured.

Flags:
  --config FILE      config file (default: ./lb.yaml if present, else built-in defaults)
  -H, --header H     a request header, "Name: value"; repeat for more
  --client IP        the client's address (default 127.0.0.1), for ip keys
  --offline          do not ask the running lb
  --json             print the explanation as JSON
  -h, --help         show this help

Example:
  lb route --config lb.yaml GET https://api.example.com/v1/x -H 'cookie: lb_web=…'
`;

export const routeCommand: Command = {
  name: "route",
  summary: "explain which route, pool and server a request would get",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags(args, {
      config: { type: "string" },
      header: { type: "string", short: "H", multiple: true },
      client: { type: "string" },
      offline: { type: "boolean" },
      json: { type: "boolean" },
    }, "route");
    if (positionals.length !== 2) {
      throw new UsageError("give a method and a URL, like: lb route GET http://host/path", "route");
    }
    const input: ExplainInput = {
      method: positionals[0],
      url: positionals[1],
      headers: (values.header ?? []).map(headerFlag),
      client: values.client,
    };
    if (!/^[A-Za-z]{1,20}$/.test(input.method)) {
      throw new UsageError(`"${input.method}" is not a method like GET`, "route");
    }
    try {
      explainRequestOf(input);
    } catch (e) {
      throw new UsageError((e as Error).message, "route");
    }
    const { config, source } = await loadConfig(values.config);
    const live = values.offline ? undefined : await askRunning(config, input);
    const out = live?.explanation ?? explainOffline(config, source, input);
    const from = live
      ? `the running lb at ${live.url} (live health and load)`
      : `${source} and its state file (lb is not running there: servers as configured, none checked)`;
    console.log(values.json ? JSON.stringify({ from, ...out }, null, 2) : describe(out, from));
    return 0;
  },
};

/** `Name: value` → [name, value]; a UsageError otherwise. */
function headerFlag(h: string): [string, string] {
  const colon = h.indexOf(":");
  const name = colon > 0 ? h.slice(0, colon).trim() : "";
  if (!/^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/.test(name) || /[\r\n\0]/.test(h)) {
    throw new UsageError(`-H takes "Name: value", got "${h}"`, "route");
  }
  return [name, h.slice(colon + 1).trim()];
}

/** The running lb's explanation, or undefined when none answers at the config's admin address. */
async function askRunning(
  config: Config,
  input: ExplainInput,
): Promise<{ url: string; explanation: Explanation } | undefined> {
  if (!config.admin.enabled) return undefined;
  const host = ["0.0.0.0", "::"].includes(config.admin.host) ? "127.0.0.1" : config.admin.host;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${config.admin.port}`;
  const token = resolveAdminToken(config);
  try {
    const res = await fetch(`${url}/api/explain`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token && { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify({ ...input, headers: Object.fromEntries(input.headers as []) }),
      signal: AbortSignal.timeout(2000),
    });
    if (res.ok) return { url, explanation: await res.json() };
    const body = await res.text();
    console.error(`lb: the lb at ${url} answered ${res.status} (${body.trim().slice(0, 200)})`);
  } catch {
    // Nothing listens there (or it did not answer in time): explain from the files.
  }
  return undefined;
}

function explainOffline(config: Config, source: string, input: ExplainInput): Explanation {
  const stateFile = resolveStateFilePath(config, source);
  const applied = applyStateFile(config, stateFile ? readStateFile(stateFile) : undefined);
  const pools = new Pools(
    applied.pools.map((a) => a.pool),
    applied.routes,
    applied.stickySecret ?? newStickySecret(),
  );
  for (const a of applied.pools) restoreAdminStates(pools.get(a.pool.name)!, a.adminStates);
  try {
    return explain(pools, explainRequestOf(input));
  } finally {
    void pools.close();
  }
}

/** The explanation as lines for people. */
export function describe(e: Explanation, from: string): string {
  const { method, host, target } = e.request;
  const lines = [`${method} ${host ?? "(no host)"}${target}`];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(17)}${v}`);
  if (!e.route) {
    row("route", "none matches: lb answers 404 no_route");
    row("explained from", from);
    return lines.join("\n");
  }
  row("route", `${e.route.number} (${e.route.name}), matching ${JSON.stringify(e.route.match)}`);
  const p = e.pool!;
  row("pool", `${p.name} (${p.strategy}, ${p.available} of ${p.servers} servers available)`);
  row("backend path", e.path!);
  const rules = (r: { set: Record<string, string>; remove: string[] }) =>
    [
      ...Object.entries(r.set).map(([n, v]) => `set ${n}: ${v}`),
      ...r.remove.map((n) => `remove ${n}`),
    ].join("; ") || "none";
  row("request headers", rules(e.requestHeaders!));
  row("response headers", rules(e.responseHeaders!));
  if (e.rateLimit) {
    const r = e.rateLimit;
    const where = r.shared ? ", shared by the cluster" : "";
    row(
      "rate limit",
      `${r.rate} per ${r.perMs}ms, burst ${r.burst}, by ${r.key} (${r.bucketKey})${where}`,
    );
  }
  if (e.sticky) {
    const s = e.sticky;
    const what = !s.sent
      ? "not sent: the answer sets one"
      : s.valid
      ? `names ${s.server}`
      : "not one lb made (forged, stale or for a removed server): ignored and replaced";
    row("sticky cookie", `${s.cookie}: ${what}`);
  }
  if (e.server) {
    row("server", `${e.server.id} (${e.server.url}, ${e.server.state}), ${e.server.why}`);
  } else row("server", `none: lb answers 503 (${e.noServer})`);
  row("explained from", from);
  return lines.join("\n");
}
