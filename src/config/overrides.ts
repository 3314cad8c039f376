/** Command-line flags over the config file: applied, then checked by the same schema. */
import { ConfigError, validateConfig } from "./load.ts";
import type { Config } from "./schema.ts";

/** Command-line overrides, applied over the file (flags win). */
export interface ConfigOverrides {
  strategy?: string;
  host?: string;
  port?: number;
  backends?: string[];
  adminPort?: number;
  logFormat?: "json" | "text";
  /** `--tls-cert` and `--tls-key`: HTTPS with these files (instead of the file's tls). */
  tls?: { cert: string; key: string };
}

/** Applies overrides and re-validates, so a bad flag value is reported like a bad file value. */
export function applyOverrides(
  config: Config,
  o: ConfigOverrides,
  source = "command line",
): Config {
  // Re-validation takes parsed values too (durations in ms and sizes in bytes are valid
  // raw inputs); only status ranges must be written back as text.
  const out: Record<string, unknown> = {
    ...config,
    health: healthAsInput(config.health),
    ...(config.pools && {
      pools: Object.fromEntries(
        Object.entries(config.pools).map(([name, p]) => [
          name,
          {
            ...p,
            ...(p.health && { health: healthAsInput(p.health) }),
            // --strategy is for every pool: a flag overrides the file.
            ...(o.strategy !== undefined && { strategy: o.strategy }),
          },
        ]),
      ),
    }),
  };
  if (o.backends !== undefined && config.pools) {
    throw new ConfigError(source, [
      "--backend replaces the backends of a config without pools; this one has pools",
    ]);
  }
  if (o.strategy !== undefined) out.strategy = o.strategy;
  if (o.host !== undefined || o.port !== undefined || o.tls !== undefined) {
    const hsts = config.listen.tls?.hsts;
    const tls = o.tls ? { ...o.tls, ...(hsts !== undefined && { hsts }) } : undefined;
    out.listen = { ...config.listen, ...strip({ host: o.host, port: o.port, tls }) };
  }
  if (o.backends !== undefined) out.backends = o.backends.map((url) => ({ url }));
  if (o.adminPort !== undefined) out.admin = { ...config.admin, port: o.adminPort };
  if (o.logFormat !== undefined) out.log = { ...config.log, format: o.logFormat };
  return validateConfig(out, source);
}

/** A health section as lb.yaml would write it (status ranges back as text). */
function healthAsInput<T extends { expectStatus?: [number, number][] }>(h: T) {
  if (!h.expectStatus) return h;
  return { ...h, expectStatus: h.expectStatus.map(([a, b]) => `${a}-${b}`) };
}

/** `o` without its undefined fields. */
function strip<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
