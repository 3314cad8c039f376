/** Command-line flags over the config file: applied, then checked by the same schema. */
import { validateConfig } from "./load.ts";
import type { Config } from "./schema.ts";

/** Command-line overrides, applied over the file (flags win). */
export interface ConfigOverrides {
  strategy?: string;
  host?: string;
  port?: number;
  backends?: string[];
  adminPort?: number;
  logFormat?: "json" | "text";
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
    health: {
      ...config.health,
      expectStatus: config.health.expectStatus.map(([a, b]) => `${a}-${b}`),
    },
  };
  if (o.strategy !== undefined) out.strategy = o.strategy;
  if (o.host !== undefined || o.port !== undefined) {
    out.listen = { ...config.listen, ...strip({ host: o.host, port: o.port }) };
  }
  if (o.backends !== undefined) out.backends = o.backends.map((url) => ({ url }));
  if (o.adminPort !== undefined) out.admin = { ...config.admin, port: o.adminPort };
  if (o.logFormat !== undefined) out.log = { ...config.log, format: o.logFormat };
  return validateConfig(out, source);
}

/** `o` without its undefined fields. */
function strip<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
