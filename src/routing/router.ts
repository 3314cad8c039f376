/**
 * The router: compiles `routes:` (config/routes.ts) once and picks, per request, the first
 * route whose every condition holds.
 *
 * A request pays for the routes that could match its host, not for the whole list: at
 * construction every exact host named in the config gets its own ordered candidate list
 * (the routes naming it, the wildcards covering it, the routes without a host condition),
 * every wildcard's parent domain gets one too, and any other host falls back to the routes
 * without a host condition. With 100 host routes a request so looks at about as many
 * routes as with one. A list with several path prefixes is indexed again by the first
 * segment of the path (every prefix but `/` fixes it: `/api` and `/api/` both need the
 * first segment `api`), so 100 prefixes cost a map lookup, not 100 comparisons.
 */
import type { RouteConfig } from "../config/routes.ts";
import { regexOf } from "../config/routes.ts";

/** One compiled route and what it sends to. */
export interface Route<T> {
  readonly config: RouteConfig;
  /** Position in the list, from 0. */
  readonly index: number;
  readonly target: T;
}

/** The route a request matched and the path (with query) its backend should see. */
export interface RouteMatchResult<T> {
  route: Route<T>;
  path: string;
}

/** A header condition: an exact value, or a regex when written as `/…/flags`. */
interface HeaderCheck {
  readonly name: string;
  readonly exact: string | undefined;
  readonly re: RegExp | undefined;
}

/**
 * A route with its conditions in the form `match` tests fastest. Every field is always
 * present (undefined when the condition is absent) so V8 sees one object shape.
 */
interface Compiled<T> {
  readonly route: Route<T>;
  readonly methods: readonly string[] | undefined;
  /** The path prefix, normalised like request paths are. */
  readonly prefix: string | undefined;
  /** The prefix ends with "/", so it matches as a plain string prefix. */
  readonly slash: boolean;
  readonly headers: readonly HeaderCheck[] | undefined;
  /**
   * stripPrefix, where there is a prefix to strip: the schema requires one, but a config
   * built by hand may lack it.
   */
  readonly strip: boolean;
}

/**
 * The candidates for one host: all of them in order, or, when the list has enough path
 * prefixes to be worth it, by the first segment of the normalised path.
 */
interface Candidates<T> {
  readonly all: readonly Compiled<T>[];
  /** Candidates for a path whose first segment is the key. */
  readonly bySegment: Map<string, readonly Compiled<T>[]> | undefined;
  /** Candidates for any other first segment: routes without a path, or with the prefix `/`. */
  readonly other: readonly Compiled<T>[];
}

/** Lists with at least this many segment-bound prefixes get a segment index. */
const INDEX_FROM = 4;

/** The first segment a prefix fixes (`/api/x` → `api`), or undefined for no prefix or `/`. */
function segmentOf(prefix: string | undefined): string | undefined {
  if (prefix === undefined || prefix.length < 2) return undefined;
  const slash = prefix.indexOf("/", 1);
  return slash < 0 ? prefix.slice(1) : prefix.slice(1, slash);
}

/** The first segment of a normalised path (`/api/x` → `api`, `/` → ``). */
function firstSegment(path: string): string {
  const slash = path.indexOf("/", 1);
  return slash < 0 ? path.slice(1) : path.slice(1, slash);
}

function indexed<T>(all: readonly Compiled<T>[]): Candidates<T> {
  const segments = new Set<string>();
  for (const c of all) {
    const seg = segmentOf(c.prefix);
    if (seg !== undefined) segments.add(seg);
  }
  const other = all.filter((c) => segmentOf(c.prefix) === undefined);
  if (segments.size < INDEX_FROM) return { all, bySegment: undefined, other };
  const bySegment = new Map<string, readonly Compiled<T>[]>();
  for (const seg of segments) {
    bySegment.set(
      seg,
      all.filter((c) => {
        const own = segmentOf(c.prefix);
        return own === undefined || own === seg;
      }),
    );
  }
  return { all, bySegment, other };
}

/** Picks the first route whose every condition holds. Immutable once built. */
export class Router<T> {
  /** The routes in config order; `routes[i].index === i`. */
  readonly routes: readonly Route<T>[];
  /** Candidates for a request whose host is exactly the key (lower case, no port or dot). */
  readonly #byHost: Map<string, Candidates<T>>;
  /** Candidates for a host one label below the key, when no exact entry exists. */
  readonly #byParent: Map<string, Candidates<T>>;
  /** Candidates for any other host, and for a request without Host. */
  readonly #hostless: Candidates<T>;
  /**
   * Some route reads the path: then the backend gets the normalised path the route was
   * chosen by, never another spelling of it (a backend that reads `/static/../admin` its own
   * way would otherwise serve what lb did not route).
   */
  readonly #pathRouting: boolean;

  /** Compiles `routes`; `target` maps each route to what it sends to (e.g. its pool). */
  constructor(routes: readonly RouteConfig[], target: (r: RouteConfig) => T) {
    const compiled = routes.map((config, index) =>
      compile({ config, index, target: target(config) })
    );
    this.routes = compiled.map((c) => c.route);
    const hosts = new Set<string>();
    const parents = new Set<string>();
    for (const r of routes) {
      for (const h of r.match.host ?? []) {
        if (h.startsWith("*.")) parents.add(h.slice(2));
        else hosts.add(h);
      }
    }
    this.#byHost = candidates(compiled, hosts, (hs, h) => hs.some((p) => hostCovers(p, h)));
    this.#byParent = candidates(compiled, parents, (hs, p) => hs.includes(`*.${p}`));
    this.#hostless = indexed(compiled.filter((c) => !hasHosts(c.route.config)));
    this.#pathRouting = compiled.some((c) => c.prefix !== undefined);
  }

  /**
   * First route whose every condition holds, or undefined.
   *
   * `method` is the request method as received; `host` the Host header (null when absent;
   * its port, case and one trailing dot are ignored); `target` the request target as sent
   * (path and optional `?query`, starting with "/"); `headers` the request's headers.
   */
  match(
    method: string,
    host: string | null,
    target: string,
    headers: Headers,
  ): RouteMatchResult<T> | undefined {
    const cands = this.#candidatesFor(host);
    // Normalised only when a candidate has a path condition, and then once.
    let path: string | undefined;
    let list = cands.all;
    if (cands.bySegment !== undefined) {
      path = normalizePath(pathOf(target));
      list = cands.bySegment.get(firstSegment(path)) ?? cands.other;
    }
    for (let i = 0; i < list.length; i++) {
      const c = list[i];
      if (c.methods !== undefined && !c.methods.includes(method)) continue;
      if (c.prefix !== undefined) {
        path ??= normalizePath(pathOf(target));
        if (!prefixMatches(c.prefix, c.slash, path)) continue;
      }
      if (c.headers !== undefined && !headersMatch(c.headers, headers)) continue;
      // With c.strip, c.prefix and path are set: the prefix was checked above.
      if (c.strip) return { route: c.route, path: stripped(c.prefix!, path!, target) };
      return { route: c.route, path: this.#pathRouting ? normalTarget(target, path) : target };
    }
    return undefined;
  }

  #candidatesFor(host: string | null): Candidates<T> {
    if (host === null) return this.#hostless;
    const key = hostKey(host);
    const exact = this.#byHost.get(key);
    if (exact !== undefined) return exact;
    if (this.#byParent.size === 0) return this.#hostless;
    const dot = key.indexOf(".");
    // An empty first label (".example.com") is no label, so no wildcard covers it.
    if (dot <= 0) return this.#hostless;
    return this.#byParent.get(key.slice(dot + 1)) ?? this.#hostless;
  }
}

function compile<T>(route: Route<T>): Compiled<T> {
  const m = route.config.match;
  const prefix = m.path === undefined ? undefined : normalizePath(m.path);
  const headers = m.headers === undefined ? [] : Object.entries(m.headers).map(headerCheck);
  return {
    route,
    methods: m.method?.length ? m.method : undefined,
    prefix,
    slash: prefix?.endsWith("/") ?? false,
    headers: headers.length ? headers : undefined,
    strip: route.config.stripPrefix && prefix !== undefined,
  };
}

function headerCheck([name, value]: [string, string]): HeaderCheck {
  const re = regexOf(value);
  // The schema already refused invalid regexes; a config built around it fails loudly here.
  if (re instanceof Error) throw new Error(`header ${name}: ${re.message}`);
  return { name, exact: re ? undefined : value, re };
}

function hasHosts(r: RouteConfig): boolean {
  return (r.match.host?.length ?? 0) > 0;
}

/** For each key, the routes (in config order) that match it or have no host condition. */
function candidates<T>(
  compiled: readonly Compiled<T>[],
  keys: Iterable<string>,
  covers: (hosts: readonly string[], key: string) => boolean,
): Map<string, Candidates<T>> {
  const out = new Map<string, Candidates<T>>();
  for (const key of keys) {
    out.set(
      key,
      indexed(compiled.filter((c) => {
        const hosts = c.route.config.match.host;
        return !hosts?.length || covers(hosts, key);
      })),
    );
  }
  return out;
}

/**
 * Whether host pattern `p` covers host (or pattern) `h`: equal, or `p` is `*.x` and `h`
 * is `x` with exactly one more label in front, as TLS wildcards and Caddy have it.
 */
function hostCovers(p: string, h: string): boolean {
  if (p === h) return true;
  if (!p.startsWith("*.") || h.startsWith("*.")) return false;
  const dot = h.indexOf(".");
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

/** The Host header as route patterns are written: lower case, no port, no trailing dot. */
function hostKey(host: string): string {
  let end = host.length;
  if (host.charCodeAt(0) === 91 /* [ */) {
    // An IPv6 literal: its colons are not a port's.
    const close = host.indexOf("]");
    if (close > 0) end = close + 1;
  } else {
    const colon = host.indexOf(":");
    if (colon >= 0) end = colon;
  }
  if (end > 0 && host.charCodeAt(end - 1) === 46 /* . */) end--;
  return (end === host.length ? host : host.slice(0, end)).toLowerCase();
}

function pathOf(target: string): string {
  const q = target.indexOf("?");
  return q < 0 ? target : target.slice(0, q);
}

/** `/api` matches `/api` and `/api/x` but not `/apiary`; `/api/` matches what starts with it. */
function prefixMatches(prefix: string, slash: boolean, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return slash || path.length === prefix.length || path.charCodeAt(prefix.length) === 47;
}

function headersMatch(checks: readonly HeaderCheck[], headers: Headers): boolean {
  for (let i = 0; i < checks.length; i++) {
    const c = checks[i];
    const v = headers.get(c.name);
    if (v === null) return false;
    if (c.re === undefined) {
      if (v !== c.exact) return false;
      continue;
    }
    // A /g or /y regex remembers where it stopped; every request starts from the beginning.
    c.re.lastIndex = 0;
    if (!c.re.test(v)) return false;
  }
  return true;
}

/** `target` with its path normalised (`path`, when already done), the query as sent. */
function normalTarget(target: string, path: string | undefined): string {
  const q = target.indexOf("?");
  const raw = q < 0 ? target : target.slice(0, q);
  const normal = path ?? normalizePath(raw);
  if (normal === raw) return target;
  return q < 0 ? normal : normal + target.slice(q);
}

/** The normalised path without `prefix`, starting with "/", and the original query. */
function stripped(prefix: string, path: string, target: string): string {
  let rest = path.slice(prefix.length);
  if (rest.charCodeAt(0) !== 47) rest = `/${rest}`;
  const q = target.indexOf("?");
  return q < 0 ? rest : rest + target.slice(q);
}

/**
 * Routes that can never match because an earlier route matches every request they match.
 * For each such route `index`, `by` is the first earlier route that covers it. Header
 * regexes are compared as written, so a shadow hidden behind two different regexes that
 * accept the same values is not reported; a reported shadow is always real.
 */
export function shadowed(routes: readonly RouteConfig[]): { index: number; by: number }[] {
  const out: { index: number; by: number }[] = [];
  for (let j = 1; j < routes.length; j++) {
    for (let i = 0; i < j; i++) {
      if (covers(routes[i].match, routes[j].match)) {
        out.push({ index: j, by: i });
        break;
      }
    }
  }
  return out;
}

/** Whether every request matching `b` also matches `a`. */
function covers(a: RouteConfig["match"], b: RouteConfig["match"]): boolean {
  if (a.host?.length) {
    if (!b.host?.length) return false;
    if (!b.host.every((h) => a.host!.some((p) => hostCovers(p, h)))) return false;
  }
  if (a.path !== undefined) {
    if (b.path === undefined) return false;
    if (!pathCovers(normalizePath(a.path), normalizePath(b.path))) return false;
  }
  if (a.method?.length) {
    if (!b.method?.length) return false;
    if (!b.method.every((m) => a.method!.includes(m))) return false;
  }
  for (const [name, value] of Object.entries(a.headers ?? {})) {
    if (b.headers?.[name] !== value) return false;
  }
  return true;
}

/**
 * Whether every path prefix `b` matches is matched by `a`. `b` itself is such a path, so
 * `a` must match it; when it does, everything below `b` is below `a` too.
 */
function pathCovers(a: string, b: string): boolean {
  return prefixMatches(a, a.endsWith("/"), b);
}

/**
 * RFC 3986 §6.2.2 normalisation of a path (no query): percent-encoded unreserved
 * characters (A-Z a-z 0-9 - . _ ~) decoded, the remaining escapes upper-cased, then dot
 * segments removed (§5.2.4) — after decoding, so `%2e%2e` counts as `..`. A path that needs
 * none of it is returned as is, without copying.
 */
export function normalizePath(path: string): string {
  const percent = path.indexOf("%") >= 0;
  if (!percent && path.charCodeAt(0) === 47 && path.indexOf("/.") < 0) return path;
  const decoded = percent ? normalizeEscapes(path) : path;
  return decoded.indexOf(".") < 0 ? decoded : removeDotSegments(decoded);
}

const HEX = "0123456789ABCDEF";

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

function unreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) ||
    c === 45 || c === 46 || c === 95 || c === 126;
}

/** Decodes escapes of unreserved characters and upper-cases the rest; a stray % stays. */
function normalizeEscapes(path: string): string {
  let out = "";
  let from = 0;
  for (let i = path.indexOf("%"); i >= 0; i = path.indexOf("%", i + 1)) {
    const hi = hexValue(path.charCodeAt(i + 1));
    const lo = hexValue(path.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) continue;
    const c = hi * 16 + lo;
    out += path.slice(from, i) + (unreserved(c) ? String.fromCharCode(c) : `%${HEX[hi]}${HEX[lo]}`);
    from = i + 3;
    i += 2;
  }
  return out + path.slice(from);
}

/**
 * RFC 3986 §5.2.4, step by step (the letters are the RFC's), reading `p` from index `i`
 * instead of cutting an input buffer. Each output entry is one segment with its leading "/".
 */
function removeDotSegments(p: string): string {
  const out: string[] = [];
  const n = p.length;
  let i = 0;
  while (i < n) {
    if (p.startsWith("../", i)) i += 3; // A
    else if (p.startsWith("./", i)) i += 2; // A
    else if (p.startsWith("/./", i)) i += 2; // B: the input now starts at the second "/"
    else if (i + 2 === n && p.startsWith("/.", i)) {
      out.push("/"); // B
      i = n;
    } else if (p.startsWith("/../", i)) {
      out.pop(); // C
      i += 3;
    } else if (i + 3 === n && p.startsWith("/..", i)) {
      out.pop(); // C
      out.push("/");
      i = n;
    } else if (n - i <= 2 && (p.slice(i) === "." || p.slice(i) === "..")) {
      i = n; // D
    } else {
      const next = p.indexOf("/", i + 1); // E
      const end = next < 0 ? n : next;
      out.push(p.slice(i, end));
      i = end;
    }
  }
  return out.join("");
}
