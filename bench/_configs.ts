/**
 * Configs the benchmark generates for lb and its peers. The peers are set up to do the same
 * job as lb: round-robin over the same three backends, keep-alive to the clients and to
 * the upstreams, one worker/thread, no logs.
 */

export interface Upstream {
  host: string;
  port: number;
}

/** The run's throwaway certificate (see bench/_tls.ts), as the three servers want it. */
export interface BenchCert {
  cert: string;
  key: string;
  /** Certificate and key in one file, for HAProxy's `crt`. */
  pem: string;
}

export interface LbConfigOptions {
  port: number;
  strategy: string;
  backends: Upstream[];
  accessLog: boolean;
  /** For the memory runs: 1,000 connections from one address, and a 1 GiB body. */
  generousLimits?: boolean;
  /** A routing table of this many routes in front of the one pool (see routeTable). */
  routes?: number;
  /** Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN) with this certificate. */
  tls?: BenchCert;
}

/**
 * `count` routes of which only the last matches wrk's requests (Host 127.0.0.1, path /):
 * three fifths name exact hosts, the rest path prefixes, and a catch-all comes last. A
 * request whose host names no route walks every prefix route before the catch-all, the
 * worst case for lb's router.
 */
export function routeTable(count: number, pool: string): Record<string, unknown>[] {
  const hosts = Math.floor((count - 1) * 0.6);
  const routes: Record<string, unknown>[] = [];
  for (let i = 1; i < count; i++) {
    const match = i <= hosts ? { host: `h${i}.example.com` } : { path: `/p${i}/` };
    routes.push({ name: `r${i}`, match, pool });
  }
  routes.push({ name: "all", pool });
  return routes;
}

/** lb.yaml for one lb target (JSON is YAML). Admin off; everything else lb's defaults. */
export function lbConfig(o: LbConfigOptions): string {
  const cfg: Record<string, unknown> = {
    listen: {
      host: "127.0.0.1",
      port: o.port,
      ...(o.tls ? { tls: { cert: o.tls.cert, key: o.tls.key } } : {}),
    },
    strategy: o.strategy,
    backends: o.backends.map((b, i) => ({
      url: `http://${b.host}:${b.port}`,
      name: `backend-${i + 1}`,
    })),
    admin: { enabled: false },
    log: { format: "json", access: o.accessLog },
  };
  if (o.routes) {
    cfg.pools = { default: { backends: cfg.backends } };
    delete cfg.backends;
    cfg.routes = routeTable(o.routes, "default");
  }
  if (o.generousLimits) {
    cfg.limits = {
      maxBodyBytes: "4GiB",
      maxConnections: 100_000,
      maxConnectionsPerClient: 100_000,
    };
  }
  return JSON.stringify(cfg, null, 2) + "\n";
}

/**
 * nginx: one worker, upstream keep-alive (`keepalive` needs HTTP/1.1 and an empty
 * Connection header to take effect), no logs, every path in `dir`. `keepalive_requests`
 * is raised on both sides because lb does not cap requests per connection; nginx's default
 * of 1000 would make wrk reconnect every 1000 requests (and, since 1.19.7, end an HTTP/2
 * connection after 1000 streams).
 *
 * With `tls`: HTTPS with HTTP/2 by ALPN (`listen … ssl http2`, the spelling of nginx 1.22;
 * 1.25 moved it to `http2 on`). TLS 1.3 is named because nginx before 1.23.4 leaves it out
 * of its default `ssl_protocols`: nginx 1.22 would negotiate TLS 1.2 and resume sessions
 * without a key exchange, while HAProxy and lb speak TLS 1.3. Its files are named apart
 * (`nginx-tls…`), so both can run from one `dir`.
 */
export function nginxConfig(
  dir: string,
  port: number,
  backends: Upstream[],
  tls?: BenchCert,
  workers = 1,
  /** Told apart from the other nginx targets' files (pid, logs). */
  tag = "",
): string {
  const n = (tls ? "nginx-tls" : "nginx") + tag;
  const listen = tls
    ? `listen 127.0.0.1:${port} ssl http2;
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;`
    : `listen 127.0.0.1:${port};`;
  return `worker_processes ${workers};
daemon off;
pid ${dir}/${n}.pid;
error_log ${dir}/${n}-error.log error;
worker_rlimit_nofile 65535;
events {
  worker_connections 16384;
}
http {
  access_log off;
  client_body_temp_path ${dir}/${n}-client-body;
  proxy_temp_path ${dir}/${n}-proxy;
  fastcgi_temp_path ${dir}/${n}-fastcgi;
  uwsgi_temp_path ${dir}/${n}-uwsgi;
  scgi_temp_path ${dir}/${n}-scgi;
  keepalive_requests 1000000;
  # WebSockets: Upgrade passed on, Connection "upgrade" for them and "" (keep-alive) otherwise.
  map $http_upgrade $connection_upgrade {
    default upgrade;
    "" "";
  }
  upstream backends {
${backends.map((b) => `    server ${b.host}:${b.port};`).join("\n")}
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    ${listen}
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 600s;
    }
  }
}
`;
}

/**
 * HAProxy: one thread, `http-reuse always` for upstream keep-alive, no `log` lines. With
 * `tls`: HTTPS with HTTP/2 and HTTP/1.1 by ALPN (HAProxy reads certificate and key from one
 * PEM file).
 */
export function haproxyConfig(port: number, backends: Upstream[], tls?: BenchCert): string {
  return `global
  nbthread 1
  # Enough for the benchmark; HAProxy needs ~2 files per connection under ulimit -n.
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  timeout tunnel 600s

frontend bench
  bind 127.0.0.1:${port}${tls ? ` ssl crt ${tls.pem} alpn h2,http/1.1` : ""}
  default_backend backends

backend backends
  balance roundrobin
${backends.map((b, i) => `  server b${i + 1} ${b.host}:${b.port}`).join("\n")}
`;
}
