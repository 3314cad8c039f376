/** The embedded default config: identical to the repository's lb.yaml (a test checks). */
export const DEFAULT_CONFIG_YAML = `# lb.yaml: the configuration of lb. Every key is optional; these are the defaults.
# Durations: 250ms, 2s, 1m. Sizes: 64KiB, 1MiB. Unknown keys are errors.

# Where lb listens for traffic.
listen:
  host: 127.0.0.1
  port: 8000

# How lb picks a backend: round-robin, weighted-round-robin, least-conn, fastest,
# p2c, random, consistent-hash, maglev.
strategy: round-robin

# For consistent-hash and maglev: what identifies a request (ip, path,
# header:NAME, cookie:NAME, query:NAME), and an optional bound on load
# (0 = off; 1.25 = no server takes more than 1.25 x the average).
hash:
  key: ip
  balanceFactor: 0

# The servers behind lb: url (origin only), optional name (default host:port),
# weight (1-1000) and maxConnections (0 = no limit).
backends:
  - url: http://127.0.0.1:9001
    name: backend-1
  - url: http://127.0.0.1:9002
    name: backend-2
  - url: http://127.0.0.1:9003
    name: backend-3

timeouts:
  connect: 5s # give up on a new connection to a backend after this (then try another)
  header: 30s # wait this long for a backend's response headers, then 504
  idle: 60s # longest silence inside a request or response body
  request: 0 # overall deadline including retries (0 = none)
  upstreamIdle: 4s # close idle keep-alive connections to backends after this

# The admin listener: /healthz now; API, metrics and dashboard later.
admin:
  host: 127.0.0.1
  port: 8001

log:
  format: auto # json, text, or auto (text on a terminal, json otherwise)
  access: true
`;
