import YAML from "yaml";
import { loadConfig } from "../config/load.ts";
import { resolveRoutes } from "../config/pools.ts";
import type { RouteConfig } from "../config/routes.ts";
import type { Config } from "../config/schema.ts";
import { readUpstreamTls } from "../proxy/upstream_tls.ts";
import { shadowed } from "../routing/router.ts";
import { type Command, noPositionals, parseFlags } from "./_flags.ts";

const USAGE = `Usage: lb check [--config FILE]

Validates the config, reads the upstreamTls files it names (as lb serve would), and prints
the effective settings (defaults filled in) and the routing table, and warns about routes
that can never match because an earlier route takes every request they would. A bad file
exits 1 with every problem named by its field path, and for YAML syntax errors by line
and column.

Flags:
  --config FILE   config file (default: ./lb.yaml if present, else built-in defaults)
  -h, --help      show this help
`;

const ms = (n: number | undefined) => (n === undefined ? undefined : `${n}ms`);
type Section = Record<string, unknown>;

/** Durations as `250ms` and status ranges as text, in any (full or partial) section. */
function sectionView(section: Section | undefined, durations: string[]): Section | undefined {
  if (!section) return undefined;
  const out: Section = { ...section };
  for (const k of durations) if (k in out) out[k] = ms(out[k] as number);
  if (Array.isArray(out.expectStatus)) {
    out.expectStatus = (out.expectStatus as [number, number][])
      .map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(",");
  }
  return out;
}

const DURATIONS = {
  timeouts: ["header", "connect", "idle", "request", "upstreamIdle"],
  health: ["interval", "timeout"],
  outlier: ["baseEjection", "maxEjection"],
  retry: ["backoffBase", "backoffMax"],
};

/** The per-pool sections of a config or of one pool, in lb.yaml's units. */
function poolSections(p: Section): Section {
  const out: Section = { ...p };
  for (const [key, durations] of Object.entries(DURATIONS)) {
    if (out[key]) out[key] = sectionView(out[key] as Section, durations);
  }
  return out;
}

/** The effective config in lb.yaml's own vocabulary (durations as 250ms, sizes in bytes). */
export function effectiveYaml(config: Config): string {
  const view = {
    ...poolSections(config),
    ...(config.pools && {
      pools: Object.fromEntries(
        Object.entries(config.pools).map(([name, p]) => [name, poolSections(p)]),
      ),
    }),
    admin: { ...config.admin, token: config.admin.token ? "(set)" : undefined },
    shutdownTimeout: ms(config.shutdownTimeout),
    ...(config.cluster && {
      cluster: {
        ...config.cluster,
        redis: config.cluster.redis ? withoutPassword(config.cluster.redis) : "(LB_CLUSTER_REDIS)",
        heartbeat: ms(config.cluster.heartbeat),
        memberTtl: ms(config.cluster.memberTtl),
      },
    }),
  };
  return YAML.stringify(JSON.parse(JSON.stringify(view)));
}

/** One line per route: its number, name, what it matches, what it does and its pool. */
export function routingTable(routes: readonly RouteConfig[]): string {
  const rows = routes.map((r, i) => {
    const m = r.match;
    const when = [
      m.host && `host ${m.host.join("|")}`,
      m.path && `path ${m.path}*`,
      m.method && `method ${m.method.join("|")}`,
      ...Object.entries(m.headers ?? {}).map(([n, v]) => `${n}: ${v}`),
    ].filter(Boolean).join(", ") || "every request";
    const does = [
      r.stripPrefix && "strip prefix",
      r.rateLimit &&
      `limit ${r.rateLimit.rate}/${r.rateLimit.per}ms by ${r.rateLimit.key}${
        r.rateLimit.shared ? ", shared" : ""
      }`,
      Object.keys(r.headers.request.set).length + r.headers.request.remove.length > 0 &&
      "request headers",
      Object.keys(r.headers.response.set).length + r.headers.response.remove.length > 0 &&
      "response headers",
    ].filter(Boolean).join(", ");
    return [`${i + 1}`, r.name, when, does ? `(${does})` : "", `→ ${r.pool}`];
  });
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => "  " + r.map((v, c) => (c < 4 ? v.padEnd(widths[c]) : v)).join("  "))
    .join("\n");
}

/** A warning for each route an earlier one shadows. */
/** A Redis URL with its password (if any) replaced, for printing. */
function withoutPassword(url: string): string {
  const u = new URL(url);
  if (u.password) u.password = "(set)";
  return u.href;
}

/** Routes whose `rateLimit.shared` has no cluster to share through (they stay per instance). */
export function sharedLimitWarnings(config: Config, routes: readonly RouteConfig[]): string[] {
  if (config.cluster) return [];
  return routes.flatMap((r, i) =>
    r.rateLimit?.shared
      ? [
        `route ${
          i + 1
        } (${r.name}): rateLimit.shared needs cluster.redis; without it the limit is this instance's own`,
      ]
      : []
  );
}

export function shadowWarnings(routes: readonly RouteConfig[]): string[] {
  return shadowed(routes).map(({ index, by }) =>
    `route ${index + 1} (${routes[index].name}) never matches: route ${by + 1} ` +
    `(${routes[by].name}) comes first and matches every request it would`
  );
}

export const checkCommand: Command = {
  name: "check",
  summary: "validate a config file; print the effective settings and the routing table",
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseFlags(args, { config: { type: "string" } }, "check");
    noPositionals(positionals, "check");
    const { config, source } = await loadConfig(values.config);
    readUpstreamTls(config, source); // what serve would refuse at start: missing, not PEM…
    const routes = resolveRoutes(config);
    console.log(`# ${source}: OK\n${effectiveYaml(config)}`);
    console.log(`# routing table (the first route that matches wins):\n${routingTable(routes)}`);
    for (const w of [...shadowWarnings(routes), ...sharedLimitWarnings(config, routes)]) {
      console.error(`lb: warning: ${w}`);
    }
    return 0;
  },
};
