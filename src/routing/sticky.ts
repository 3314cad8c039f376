/**
 * Cookie stickiness (`sticky.cookie`): a response from a sticky pool carries a cookie that
 * names the server that answered, and a request that brings it back goes to that server
 * while it is available.
 *
 * The cookie's value is an HMAC of the pool's name and the server's id under a secret lb
 * keeps (`sticky.secret`, or one generated once and kept in the state file): it names the
 * server without showing its address, and a client cannot make up a value that names any
 * server, since only lb can compute one. A value lb does not know (forged, from before the
 * secret changed, for a removed server, malformed) is simply not found: the strategy picks
 * anew and the cookie is replaced. HAProxy's `cookie SRV insert` and nginx Plus's
 * `sticky cookie` do the same with a server name or an MD5 of the address, unsigned.
 */
import { createHmac } from "node:crypto";
import type { ServerPool } from "../balancing/pool.ts";
import type { Server } from "../balancing/server.ts";
import type { StickyConfig } from "../config/sections.ts";

/**
 * The value of cookie `name` in a Cookie header, or "" (the first one, as browsers send
 * them). Cookies are split at `;` and at `,` too: HTTP/2 may send one Cookie field per
 * cookie, which Headers joins with ", ", and no cookie value may hold a comma (RFC 6265).
 */
export function cookieValue(header: string | null, name: string): string {
  if (header === null) return "";
  for (const part of header.split(/[;,]/)) {
    const eq = part.indexOf("=");
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return "";
}

/** A random secret for the sticky cookies of an lb that was given none (kept in the state file). */
export function newStickySecret(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/=+$/, "");
}

export class Sticky {
  readonly cookie: string;
  /** The pool's own `sticky.secret`, which nothing replaces. */
  readonly #own: boolean;
  #secret: string;
  #tokens = new Map<string, string>(); // server id → cookie value
  #servers = new Map<string, string>(); // cookie value → server id
  #unsubscribe: () => void;

  constructor(
    config: StickyConfig,
    secret: string,
    readonly poolName: string,
    readonly pool: ServerPool,
  ) {
    this.cookie = config.cookie;
    this.#own = config.secret !== undefined;
    this.#secret = config.secret ?? secret;
    this.#rebuild();
    this.#unsubscribe = pool.subscribe((e) => e.type === "membership" && this.#rebuild());
  }

  #rebuild(): void {
    this.#tokens.clear();
    this.#servers.clear();
    for (const s of this.pool.servers) {
      const token = createHmac("sha256", this.#secret).update(`${this.poolName}\0${s.id}`)
        .digest("base64url").slice(0, 22); // 132 bits
      this.#tokens.set(s.id, token);
      this.#servers.set(token, s.id);
    }
  }

  /** Signs with lb's new key from now on, unless the pool has its own. */
  rekey(secret: string): void {
    if (this.#own || secret === this.#secret) return;
    this.#secret = secret;
    this.#rebuild();
  }

  /** The cookie value that names `s`. */
  tokenOf(s: Server): string | undefined {
    return this.#tokens.get(s.id);
  }

  /** The server the request's cookie names, if it names one of this pool's (available or not). */
  serverFor(cookieHeader: string | null): { server: Server | undefined; token: string } {
    const token = cookieValue(cookieHeader, this.cookie);
    const id = token ? this.#servers.get(token) : undefined;
    return { server: id === undefined ? undefined : this.pool.get(id), token };
  }

  /** The Set-Cookie value that sends the client back to `s`. */
  setCookie(s: Server, secure: boolean): string | undefined {
    const token = this.#tokens.get(s.id);
    if (token === undefined) return undefined;
    return `${this.cookie}=${token}; Path=/; HttpOnly; SameSite=Lax${secure ? "; Secure" : ""}`;
  }

  close(): void {
    this.#unsubscribe();
  }
}
