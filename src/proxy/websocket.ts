/**
 * WebSockets (RFC 6455) as a message relay: the strategy picks a server, lb opens a
 * WebSocket to it first (a refused connection goes to the next server like any try), then
 * answers the client's upgrade with the backend's chosen subprotocol and relays messages
 * both ways until one side closes. `Deno.serve` offers no raw socket after a 101 (only
 * `Deno.upgradeWebSocket`), so this is the relay the platform allows; permessage-deflate is
 * negotiated by neither side, so it is never half-negotiated.
 *
 * Memory stays bounded: a side that stops reading while the other sends is closed with 1013
 * (try again later) once more than {@link MAX_BUFFERED} bytes wait for it. An open WebSocket
 * counts as in flight on its server for as long as it lives.
 */
import type { Server } from "../balancing/server.ts";
import { report } from "./attempt.ts";
import { choose } from "./choose.ts";
import type { ProxyContext } from "./context.ts";
import { fail, noServer } from "./fail.ts";
import { Failure } from "./failures.ts";
import type { Flight } from "./flight.ts";

/** Per pool and server: WebSockets open now, bytes each way, closes for a slow reader. */
export interface WebSocketCounts {
  open: number;
  bytesIn: number;
  bytesOut: number;
  overflows: number;
}

/** An open WebSocket: its client side, its server, and since when that server drains. */
interface OpenSocket {
  server: Server;
  /** When lb first saw its server draining or removed (0: it is not). */
  drainingSince: number;
}

/**
 * One lb's open WebSockets (shutdown closes them) and their counts (for /metrics). A
 * WebSocket whose server drains or leaves is left alone for `drainTimeout`, then closed
 * with 1001, checked once a second while any is open.
 */
export class WebSockets {
  readonly open = new Map<WebSocket, OpenSocket>();
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(readonly drainTimeoutMs = 300_000) {}

  add(ws: WebSocket, server: Server): void {
    this.open.set(ws, { server, drainingSince: 0 });
    this.#timer ??= setInterval(() => this.checkDrains(), 1000);
  }

  delete(ws: WebSocket): void {
    this.open.delete(ws);
    if (this.open.size === 0) this.stop();
  }

  /** Closes the WebSockets whose server has drained for longer than drainTimeout. */
  checkDrains(now = Date.now()): void {
    for (const [ws, o] of this.open) {
      if (!o.server.draining && !o.server.removed) {
        o.drainingSince = 0;
        continue;
      }
      o.drainingSince ||= now;
      if (now - o.drainingSince >= this.drainTimeoutMs) {
        ws.close(1001, "lb: the server is draining");
      }
    }
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
  /** By "pool\nserver id". */
  readonly counts = new Map<string, WebSocketCounts>();

  countsOf(pool: string, server: string): WebSocketCounts {
    const key = `${pool}\n${server}`;
    let c = this.counts.get(key);
    if (!c) this.counts.set(key, c = { open: 0, bytesIn: 0, bytesOut: 0, overflows: 0 });
    return c;
  }
}

/** Bytes that may wait for a slow reader, per direction, before lb closes with 1013. */
export const MAX_BUFFERED = 32 * 1024 * 1024;

/** Request headers the WebSocket client sets itself, or that belong to the handshake. */
const HANDSHAKE = new Set([
  "host",
  "sec-websocket-key",
  "sec-websocket-version",
  "sec-websocket-extensions",
  "sec-websocket-protocol",
]);

/**
 * Whether `req` is a WebSocket handshake (RFC 6455 §4.1): GET with `Upgrade: websocket`,
 * `upgrade` among the Connection tokens, and a key. Anything less is a plain request, whose
 * Upgrade header is hop-by-hop and removed.
 */
export function isWebSocketUpgrade(req: Request): boolean {
  const h = req.headers;
  return req.method === "GET" && h.get("upgrade")?.toLowerCase() === "websocket" &&
    h.has("sec-websocket-key") &&
    (h.get("connection") ?? "").toLowerCase().split(",").some((t) => t.trim() === "upgrade");
}

/** Finds a server that accepts the WebSocket, then relays; lb's error when none does. */
export async function proxyWebSocket(px: ProxyContext, f: Flight, req: Request): Promise<Response> {
  const { pool } = f;
  const origins = f.route?.config.websocketOrigins;
  const origin = req.headers.get("origin") ?? "";
  if (origins !== undefined && !origins.includes(origin)) {
    const from = origin ? `Origin ${origin}` : "no Origin";
    return fail(
      px,
      f,
      new Failure("origin_refused", `WebSockets from ${from} are not allowed here`),
    );
  }
  const offered = (req.headers.get("sec-websocket-protocol") ?? "").split(",")
    .map((s) => s.trim()).filter(Boolean);
  for (let attempt = 1; attempt <= pool.settings.retry.attempts; attempt++) {
    const server = choose(f);
    if (server === undefined) break;
    (f.tried ??= new Set()).add(server);
    f.rec.tries = attempt;
    f.rec.backend = server.id;
    pool.servers.beginRequest(server);
    const up = await openUpstream(server, f, offered, pool.settings.timeouts.connect);
    if (up instanceof Failure) {
      report(pool, server, false);
      f.last = { failure: up, server };
      continue;
    }
    return relay(px, f, req, server, up);
  }
  return f.last ? fail(px, f, f.last.failure, f.last.server) : fail(px, f, noServer(pool));
}

/** A WebSocket to `server` for this request, open, or why there is none. */
function openUpstream(
  server: Server,
  f: Flight,
  protocols: string[],
  timeoutMs: number,
): Promise<WebSocket | Failure> {
  const url = `${server.url.replace(/^http/, "ws")}${f.path}`;
  const headers = Object.entries(f.headers).filter(([n]) => !HANDSHAKE.has(n));
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url, { protocols, headers } as unknown as string[]);
    } catch (e) {
      return resolve(new Failure("connect_failed", `cannot open ${url}: ${(e as Error).message}`));
    }
    ws.binaryType = "arraybuffer";
    const timer = setTimeout(() => {
      ws.close();
      resolve(
        new Failure("connect_timeout", `no WebSocket to ${server.url} within ${timeoutMs}ms`),
      );
    }, timeoutMs);
    ws.onopen = () => (clearTimeout(timer), resolve(ws));
    ws.onerror = (e) => {
      clearTimeout(timer);
      const why = (e as ErrorEvent).message ?? "the handshake failed";
      resolve(new Failure("connect_failed", `WebSocket to ${server.url} refused: ${why}`));
    };
  });
}

/** Answers the client's upgrade and relays until either side closes. */
function relay(
  px: ProxyContext,
  f: Flight,
  req: Request,
  server: Server,
  up: WebSocket,
): Response {
  let upgraded: { socket: WebSocket; response: Response };
  try {
    upgraded = Deno.upgradeWebSocket(req, { protocol: up.protocol || undefined });
  } catch (e) {
    up.close();
    report(f.pool, server, true);
    return fail(
      px,
      f,
      new Failure("bad_request", `not a WebSocket upgrade: ${(e as Error).message}`),
    );
  }
  const { socket: down, response } = upgraded;
  down.binaryType = "arraybuffer";
  const counts = { in: 0, out: 0, overflowed: false };
  const stats = px.websockets.countsOf(f.pool.name, server.id);
  stats.open++;
  const timers = limits(f, down, up);
  let ended = false;
  const end = (backendFailed: boolean) => {
    if (ended) return;
    ended = true;
    timers.clear();
    stats.open--;
    px.websockets.delete(down);
    report(f.pool, server, !backendFailed);
    f.finish(
      101,
      counts.overflowed ? "a peer stopped reading (closed with 1013)" : undefined,
      counts.out,
    );
    f.rec.bytesIn = counts.in;
  };
  px.websockets.add(down, server);
  const pass = (from: WebSocket, to: WebSocket, dir: "in" | "out") => (e: MessageEvent) => {
    const size = typeof e.data === "string" ? e.data.length : (e.data as ArrayBuffer).byteLength;
    counts[dir] += size;
    if (dir === "in") stats.bytesIn += size;
    else stats.bytesOut += size;
    timers.active();
    if (to.readyState !== WebSocket.OPEN) return;
    if (to.bufferedAmount > MAX_BUFFERED) {
      counts.overflowed = true;
      stats.overflows++;
      to.close(to === down ? 1013 : 4013, "lb: the peer stopped reading");
      from.close(from === down ? 1013 : 4013, "lb: the peer stopped reading");
      return;
    }
    to.send(e.data);
  };
  down.onmessage = pass(down, up, "in");
  up.onmessage = pass(up, down, "out");
  down.onclose = (e) => {
    // A client-side WebSocket may only send 1000 or 3000-4999 (WHATWG): others go as 1000.
    const code = e.code === 1000 || (e.code >= 3000 && e.code <= 4999) ? e.code : 1000;
    if (up.readyState === WebSocket.OPEN) up.close(code, e.reason);
    end(false);
  };
  up.onclose = (e) => {
    // The backend went away without a close frame: 1006, which Deno 2.9.6 reports as 0.
    const abnormal = e.code === 1006 || e.code === 0;
    const code = abnormal ? 1011 : e.code === 1005 ? 1000 : e.code;
    if (down.readyState === WebSocket.OPEN) {
      down.close(code, abnormal ? "lb: the backend went away" : e.reason);
    }
    end(abnormal);
  };
  up.onerror = () => {};
  down.onerror = () => {};
  return response;
}

/**
 * `timeouts.websocketIdle` (no message either way for that long) and `timeouts.websocketMax`
 * (a longest life): either closes the client with 1001 and the backend with 1000 (the only
 * code below 3000 a client-side WebSocket may send). 0 turns each off.
 */
function limits(f: Flight, down: WebSocket, up: WebSocket) {
  const { websocketIdle, websocketMax } = f.pool.settings.timeouts;
  const stop = (why: string) => () => {
    if (down.readyState === WebSocket.OPEN) down.close(1001, why);
    if (up.readyState === WebSocket.OPEN) up.close(1000, why);
  };
  let idle: ReturnType<typeof setTimeout> | undefined;
  const idleStop = stop(`lb: no message for ${websocketIdle}ms`);
  const max = websocketMax > 0
    ? setTimeout(stop(`lb: open for ${websocketMax}ms (websocketMax)`), websocketMax)
    : undefined;
  const active = () => {
    if (websocketIdle <= 0) return;
    clearTimeout(idle);
    idle = setTimeout(idleStop, websocketIdle);
  };
  active();
  return { active, clear: () => (clearTimeout(idle), clearTimeout(max)) };
}
