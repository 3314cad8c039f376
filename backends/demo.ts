/**
 * The demo backends: small HTTP servers to put behind lb, try the strategies on, and
 * benchmark against. Each is one plain `Deno.serve` with no dependencies, because the
 * benchmark uses it as the upstream and must measure lb, not the backend.
 *
 * Routes (every answer carries `x-backend: backend-N`):
 * - `GET /health`: 200 `{"status":"ok"}`, or 503 `{"status":"unhealthy"}` when not healthy.
 * - `GET|POST /_demo`: show, or change live, `{latencyMs, failRate, healthy}` (see {@link DemoSettings}).
 * - everything else is traffic: it waits `latencyMs`, fails with a simulated 500 with
 *   probability `failRate`, then
 *   - `POST /echo` streams the request body back as it arrives;
 *   - `GET /stream?bytes=N[&chunk=K][&delayMs=D]` streams N bytes (a-z repeating) in chunks of K;
 *   - `GET /sse?events=N&intervalMs=D` sends N server-sent events `data: {"n":i}`, one every D ms;
 *   - any other request gets JSON describing it: backend, port, method, path, headers.
 *
 * @example
 * ```ts
 * const b = await startDemoBackend({ port: 0, index: 1, latencyMs: 20 });
 * const res = await fetch(`${b.url}/hello?x=1`); // {"backend":"backend-1",…,"path":"/hello?x=1",…}
 * await res.body?.cancel();
 * await b.close();
 * ```
 */

/** How a demo backend behaves. Change it live with `POST /_demo`, or assign to `DemoBackend.settings`. */
export interface DemoSettings {
  /** Delay before every traffic answer, in ms (0..600000). */
  latencyMs: number;
  /** Probability (0..1) that a traffic request gets a simulated 500. */
  failRate: number;
  /** Whether `GET /health` answers 200; when false it answers 503. */
  healthy: boolean;
}

export interface DemoBackendOptions {
  /** Address to listen on. Default `127.0.0.1`. */
  host?: string;
  /** Port to listen on; 0 lets the OS pick one. */
  port: number;
  /** 1-based position: the server is named `backend-<index>`. */
  index: number;
  /** Default 0. */
  latencyMs?: number;
  /** Default 0. */
  failRate?: number;
  /** Default true. */
  healthy?: boolean;
  /** Uniform numbers in [0, 1) that decide simulated failures. Default `Math.random`. */
  random?: () => number;
  /** Closes the server when aborted. */
  signal?: AbortSignal;
}

export interface DemoBackend {
  /** `backend-<index>`. */
  name: string;
  /** The port it actually listens on (the OS's pick when asked for 0). */
  port: number;
  /** Origin, e.g. `http://127.0.0.1:9001`. */
  url: string;
  server: Deno.HttpServer<Deno.NetAddr>;
  /** Live settings: read on every request. */
  settings: DemoSettings;
  /** Ends streams and latency waits in flight, then shuts the server down. Idempotent. */
  close(): Promise<void>;
}

export const MAX_LATENCY_MS = 600_000;
const MAX_CHUNK = 16 * 1024 * 1024;
const MAX_EVENTS = 1_000_000;

/** Starts one demo backend; rejects with a one-sentence Error when it cannot listen. */
export function startDemoBackend(opts: DemoBackendOptions): Promise<DemoBackend> {
  const name = `backend-${opts.index}`;
  const host = opts.host ?? "127.0.0.1";
  const initial = validateSettings({
    latencyMs: opts.latencyMs ?? 0,
    failRate: opts.failRate ?? 0,
    healthy: opts.healthy ?? true,
  });
  if (typeof initial === "string") return Promise.reject(new RangeError(`${name}: ${initial}`));
  const settings: DemoSettings = { latencyMs: 0, failRate: 0, healthy: true, ...initial };
  const random = opts.random ?? Math.random;
  // Aborted by close(): ends latency waits and streams so shutdown does not wait on them.
  const closing = new AbortController();
  let port = opts.port;

  const json = (body: unknown, status = 200) =>
    new Response(JSON.stringify(body), {
      status,
      headers: { "content-type": "application/json", "x-backend": name },
    });

  const handler = async (req: Request): Promise<Response> => {
    const target = rawTarget(req.url);
    const q = target.indexOf("?");
    const path = q === -1 ? target : target.slice(0, q);
    if (path === "/health") {
      return settings.healthy ? json({ status: "ok" }) : json({ status: "unhealthy" }, 503);
    }
    if (path === "/_demo") return await control(req, settings, json);

    if (settings.latencyMs > 0) {
      try {
        await delay(settings.latencyMs, req.signal, closing.signal);
      } catch {
        // The client went away (nobody reads this) or the server is closing.
        return json({ backend: name, error: "the server is shutting down" }, 503);
      }
    }
    if (settings.failRate > 0 && random() < settings.failRate) {
      return json({ backend: name, error: "simulated failure" }, 500);
    }
    const query = q === -1 ? "" : target.slice(q + 1);
    if (req.method === "POST" && path === "/echo") {
      return new Response(req.body, {
        headers: {
          "content-type": req.headers.get("content-type") ?? "application/octet-stream",
          "x-backend": name,
        },
      });
    }
    if (req.method === "GET" && path === "/stream") {
      const p = new URLSearchParams(query);
      const bytes = intParam(p, "bytes", 1024 * 1024, 0, Number.MAX_SAFE_INTEGER);
      const chunk = intParam(p, "chunk", 64 * 1024, 1, MAX_CHUNK);
      const delayMs = intParam(p, "delayMs", 0, 0, MAX_LATENCY_MS);
      for (const v of [bytes, chunk, delayMs]) {
        if (typeof v === "string") return json({ error: v }, 400);
      }
      return new Response(
        byteStream(bytes as number, chunk as number, delayMs as number, closing.signal),
        {
          headers: { "content-type": "application/octet-stream", "x-backend": name },
        },
      );
    }
    if (req.method === "GET" && path === "/sse") {
      const p = new URLSearchParams(query);
      const events = intParam(p, "events", 10, 0, MAX_EVENTS);
      const intervalMs = intParam(p, "intervalMs", 1000, 0, MAX_LATENCY_MS);
      for (const v of [events, intervalMs]) {
        if (typeof v === "string") return json({ error: v }, 400);
      }
      return new Response(eventStream(events as number, intervalMs as number, closing.signal), {
        headers: {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          "x-backend": name,
        },
      });
    }
    return json({
      backend: name,
      port,
      method: req.method,
      path: target,
      headers: Object.fromEntries(req.headers),
    });
  };

  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve({ hostname: host, port: opts.port, onListen() {} }, handler);
  } catch (e) {
    const where = `${host.includes(":") ? `[${host}]` : host}:${opts.port}`;
    const why = e instanceof Deno.errors.AddrInUse
      ? "the port is already in use"
      : (e as Error).message;
    return Promise.reject(new Error(`${name} cannot listen on ${where}: ${why}`, { cause: e }));
  }
  port = server.addr.port;

  let closed: Promise<void> | undefined;
  const onAbort = () => void close();
  const close = () =>
    closed ??= (() => {
      opts.signal?.removeEventListener("abort", onAbort);
      closing.abort();
      return server.shutdown();
    })();
  if (opts.signal?.aborted) void close();
  else opts.signal?.addEventListener("abort", onAbort, { once: true });

  return Promise.resolve({ name, port, url: originOf(host, port), server, settings, close });
}

export interface DemoBackendsOptions {
  /** How many servers, named backend-1 … backend-<count>. */
  count: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** Port of backend-1; backend-i listens on `port + i - 1`. 0: each lets the OS pick. */
  port: number;
  /** One latency for all servers, or one per server. Default `[0]`. */
  latency?: number[];
  /** One fail rate for all servers, or one per server. Default `[0]`. */
  failRate?: number[];
  random?: () => number;
  /** Closes every server when aborted. */
  signal?: AbortSignal;
}

/**
 * Starts `count` demo backends on consecutive ports. If one cannot listen, closes the
 * ones already started and rejects with that one's error.
 */
export async function startDemoBackends(opts: DemoBackendsOptions): Promise<DemoBackend[]> {
  const latency = opts.latency ?? [0];
  const failRate = opts.failRate ?? [0];
  for (const [flag, list] of [["latency", latency], ["failRate", failRate]] as const) {
    if (list.length !== 1 && list.length !== opts.count) {
      throw new RangeError(
        `${flag} has ${list.length} values for ${opts.count} servers; give one, or one per server`,
      );
    }
  }
  const started: DemoBackend[] = [];
  try {
    for (let i = 0; i < opts.count; i++) {
      started.push(
        await startDemoBackend({
          host: opts.host,
          port: opts.port === 0 ? 0 : opts.port + i,
          index: i + 1,
          latencyMs: latency.length === 1 ? latency[0] : latency[i],
          failRate: failRate.length === 1 ? failRate[0] : failRate[i],
          random: opts.random,
          signal: opts.signal,
        }),
      );
    }
  } catch (e) {
    await Promise.all(started.map((b) => b.close()));
    throw e;
  }
  return started;
}

/** One line for logs: `backend-1 listening on http://127.0.0.1:9001 (latency 5ms, fail-rate 0)`. */
export function describeDemoBackend(b: DemoBackend): string {
  return `${b.name} listening on ${b.url} (latency ${b.settings.latencyMs}ms, fail-rate ${b.settings.failRate})`;
}

/** `POST /_demo` changes the settings (all or nothing); `GET /_demo` shows them. */
async function control(
  req: Request,
  settings: DemoSettings,
  json: (body: unknown, status?: number) => Response,
): Promise<Response> {
  if (req.method === "GET") return json(settings);
  if (req.method !== "POST") return json({ error: "use GET or POST on /_demo" }, 405);
  let body: unknown;
  try {
    body = JSON.parse(await req.text());
  } catch {
    return json({
      error: 'the body must be JSON, e.g. {"latencyMs": 50, "failRate": 0.1, "healthy": false}',
    }, 400);
  }
  const patch = validateSettings(body);
  if (typeof patch === "string") return json({ error: patch }, 400);
  Object.assign(settings, patch);
  return json(settings);
}

/** Checks a partial DemoSettings object; returns it, or an error sentence. */
function validateSettings(body: unknown): Partial<DemoSettings> | string {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return 'the body must be a JSON object, e.g. {"latencyMs": 50}';
  }
  for (const [k, v] of Object.entries(body)) {
    if (k === "latencyMs") {
      if (typeof v !== "number" || !(v >= 0 && v <= MAX_LATENCY_MS)) {
        return `latencyMs must be a number from 0 to ${MAX_LATENCY_MS}, got ${JSON.stringify(v)}`;
      }
    } else if (k === "failRate") {
      if (typeof v !== "number" || !(v >= 0 && v <= 1)) {
        return `failRate must be a number from 0 to 1, got ${JSON.stringify(v)}`;
      }
    } else if (k === "healthy") {
      if (typeof v !== "boolean") return `healthy must be true or false, got ${JSON.stringify(v)}`;
    } else {
      return `unknown setting "${k}"; the settings are latencyMs, failRate and healthy`;
    }
  }
  return body as Partial<DemoSettings>;
}

/** The request target exactly as received (path and query, dot segments kept): what follows the authority. */
function rawTarget(url: string): string {
  const i = url.indexOf("/", url.indexOf("://") + 3);
  return i === -1 ? "/" : url.slice(i);
}

function originOf(host: string, port: number): string {
  return `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** A whole-number query parameter within [min, max]; an error sentence otherwise. */
function intParam(
  p: URLSearchParams,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number | string {
  const v = p.get(key);
  if (v === null) return fallback;
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) {
    return `${key} must be a whole number from ${min} to ${max}, got "${v}"`;
  }
  return n;
}

/** Resolves after `ms`; rejects as soon as any signal aborts, clearing the timer. */
function delay(ms: number, ...signals: AbortSignal[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const aborted = signals.find((s) => s.aborted);
    if (aborted) return reject(aborted.reason);
    const done = () => {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", onAbort);
    };
    const onAbort = (e: Event) => {
      done();
      reject((e.target as AbortSignal).reason);
    };
    const timer = setTimeout(() => {
      done();
      resolve();
    }, ms);
    for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * `bytes` bytes of a-z repeating, made one chunk per pull so memory stays constant
 * whatever the size. Cancelling (the client left) or closing the server stops it.
 */
function byteStream(
  bytes: number,
  chunk: number,
  delayMs: number,
  closing: AbortSignal,
): ReadableStream<Uint8Array> {
  const size = Math.min(chunk, bytes);
  const pattern = new Uint8Array(size + 26);
  for (let i = 0; i < pattern.length; i++) pattern[i] = 97 + (i % 26);
  const cancelled = new AbortController();
  let sent = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (closing.aborted) throw closing.reason;
      if (sent > 0 && delayMs > 0) await delay(delayMs, cancelled.signal, closing);
      const n = Math.min(chunk, bytes - sent);
      if (n > 0) controller.enqueue(pattern.slice(sent % 26, (sent % 26) + n));
      sent += n;
      if (sent >= bytes) controller.close();
    },
    cancel(reason) {
      cancelled.abort(reason);
    },
  });
}

/** `events` server-sent events `data: {"n":1}` … `data: {"n":events}`, the first at once, then one every `intervalMs`. */
function eventStream(
  events: number,
  intervalMs: number,
  closing: AbortSignal,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  const cancelled = new AbortController();
  let n = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (closing.aborted) throw closing.reason;
      if (n > 0) await delay(intervalMs, cancelled.signal, closing);
      if (n < events) controller.enqueue(encoder.encode(`data: {"n":${++n}}\n\n`));
      if (n >= events) controller.close();
    },
    cancel(reason) {
      cancelled.abort(reason);
    },
  });
}
