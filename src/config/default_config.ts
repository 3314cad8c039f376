/** The embedded default config: identical to the repository's lb.yaml (a test checks). */
export const DEFAULT_CONFIG_YAML =
  `# lb.yaml: the configuration of lb. Every key is optional; the values below are the
# defaults, except backends (the three demo servers). Durations: 250ms, 2s, 1m.
# Sizes: 64KiB, 1MiB. Unknown keys are errors. Check a file with: lb check --config FILE

# Where lb listens for traffic.
listen:
  host: 127.0.0.1
  port: 8000

# How lb picks a backend: round-robin, weighted-round-robin, least-conn, fastest,
# p2c, random, consistent-hash, maglev. \`lb simulate\` compares them.
strategy: round-robin

# For consistent-hash and maglev.
hash:
  key: ip # what identifies a request: ip, path, header:NAME, cookie:NAME, query:NAME
  balanceFactor: 0 # bound on load: 0 = off; 1.25 = no server over 1.25 x the mean
  vnodes: 160 # ring points per unit of weight (consistent-hash)
  tableSize: 65537 # lookup table size, a prime (maglev)

# The servers behind lb: url (origin only), optional name (default host:port),
# weight (1-1000) and maxConnections (requests in flight; 0 = no limit).
backends:
  - url: http://127.0.0.1:9001
    name: backend-1
  - url: http://127.0.0.1:9002
    name: backend-2
  - url: http://127.0.0.1:9003
    name: backend-3

timeouts:
  connect: 5s # give up on a new connection to a backend after this (then try another)
  header: 30s # wait this long for response headers (after the request is sent), then 504
  idle: 60s # longest silence on a backend connection: while sending a body, or mid-response
  request: 0 # overall deadline including retries (0 = none)
  upstreamIdle: 4s # close idle keep-alive connections to backends after this

# Active health checks: GET path on every backend every interval.
health:
  enabled: true
  path: /health
  interval: 2s # with +-10% jitter; checks of one server never overlap
  timeout: 1s
  expectStatus: 200-399 # a status or range, or a list of them
  rise: 2 # consecutive passes to become healthy
  fall: 3 # consecutive failures to become unhealthy
  assumeHealthy: true # new servers take traffic before their first check

# Passive health: eject a server after consecutive failures on real traffic.
outlier:
  enabled: true
  consecutive: 5
  on5xx: false # count 5xx answers as failures too
  baseEjection: 30s # x the number of times the server has been ejected
  maxEjection: 300s
  maxEjectionPercent: 50 # never eject more than this share of servers (one always may be)

# Failed tries go to another server.
retry:
  attempts: 3 # tries per request, the first included
  on: [502, 503, 504] # statuses retried for idempotent requests and kept bodies
  backoffBase: 25ms # full-jitter exponential backoff between tries
  backoffMax: 250ms
  budgetPercent: 20 # retries in flight at most this share of requests in flight
  minConcurrent: 3 # ... but always allow this many
  bufferLimit: 64KiB # request bodies up to this size are kept for replay

# When every server is down, try them all anyway instead of answering 503.
panicMode: true

limits:
  maxBodyBytes: 1GiB # 413 past this, counted as the body streams
  maxUriBytes: 8KiB # 414
  maxHeaderBytes: 32KiB # 431
  maxConnections: 10000 # requests in flight in all (503 past it)
  maxConnectionsPerClient: 1000 # requests in flight per client address

# Peers (CIDRs) whose X-Forwarded-For / -Proto / -Host and Forwarded are trusted.
trustedProxies: []

# The admin listener: JSON API (/api), /metrics, /events and the dashboard (/).
admin:
  enabled: true
  host: 127.0.0.1 # a non-loopback host needs a token
  port: 8001
  # token: a-long-random-secret # or env LB_ADMIN_TOKEN; required as Bearer on /api
  # stateFile: lb.state.json # API changes are kept here (default: beside this file)

log:
  format: auto # json, text, or auto (text on a terminal, json otherwise)
  access: true # one line per request

# On SIGTERM/SIGINT, finish requests in flight for up to this long.
shutdownTimeout: 15s
`;
