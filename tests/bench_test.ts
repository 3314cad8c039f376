/**
 * Behaviour of the benchmark's own parts (no timings): wrk's report is read right, the
 * peers' generated configs are valid for the installed nginx and HAProxy, targets are
 * judged right, profiles are summed right, and subprocesses are stopped.
 * Run: deno test -A bench/
 */
import assert from "node:assert/strict";
import { parseConfig } from "../src/config/load.ts";
import { haproxyConfig, lbConfig, nginxConfig } from "../bench/_configs.ts";
import { freePort, memoryOf, Procs, waitForPort } from "../bench/_procs.ts";
import { summarizeProfile } from "../bench/_profile.ts";
import { makeCertificate } from "../bench/_tls.ts";
import { h2loadArgs, parseH2load } from "../bench/_h2load.ts";
import {
  addRatios,
  checkTargets,
  formatTable,
  formatTlsMarkdown,
  formatTlsTables,
  summarize,
  type TargetResult,
} from "../bench/_report.ts";
import type { TlsKind } from "../bench/_tls.ts";
import { parseWrk, parseWrkTime, type WrkResult } from "../bench/_wrk.ts";
import { webSocketLines } from "../bench/run.ts";
import { parseSettings, selected, UsageError } from "../bench/run.ts";

const WRK_OUTPUT = `Running 10s test @ http://127.0.0.1:8000/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.03ms  384.45us  11.37ms   89.73%
    Req/Sec    24.85k     1.23k   26.61k    80.00%
  Latency Distribution
     50%  812.00us
     75%    2.11ms
     90%    2.36ms
     99%    1.01s
  247312 requests in 10.00s, 56.13MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 12
Requests/sec:  24730.43
Transfer/sec:      5.61MB
`;

Deno.test("wrk's report is read into req/s, latency percentiles in ms and error counts", () => {
  const r = parseWrk(WRK_OUTPUT);
  assert.equal(r.requestsPerSec, 24730.43);
  assert.equal(r.p50, 0.812);
  assert.equal(r.p75, 2.11);
  assert.equal(r.p99, 1010);
  assert.equal(r.requests, 247312);
  assert.equal(r.seconds, 10);
  assert.equal(r.non2xx, 12);
  assert.equal(r.errors, 17);
});

Deno.test("a wrk report without Requests/sec is an error, not a zero", () => {
  assert.throws(
    () => parseWrk("unable to connect to 127.0.0.1:1 Connection refused\n"),
    /Requests/,
  );
});

Deno.test("wrk times in us, ms, s and m convert to ms", () => {
  assert.equal(parseWrkTime("250.00us"), 0.25);
  assert.equal(parseWrkTime("3.5ms"), 3.5);
  assert.equal(parseWrkTime("2.00s"), 2000);
  assert.equal(parseWrkTime("1.00m"), 60_000);
  assert.throws(() => parseWrkTime("fast"));
});

// h2load 1.52 (nghttp2-client in Debian 12) against nginx 1.22 over TLS, -c 50 -m 10 -D 3.
const H2LOAD_OUTPUT = `starting benchmark...
spawning thread #0: 50 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Warm-up started for thread #0.
progress: 10% of clients started
progress: 20% of clients started
progress: 30% of clients started
progress: 40% of clients started
progress: 50% of clients started
progress: 60% of clients started
progress: 70% of clients started
progress: 80% of clients started
progress: 90% of clients started
progress: 100% of clients started
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 3.01s, 20972.00 req/s, 4.34MB/s
requests: 62916 total, 63416 started, 62916 done, 62916 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 62916 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 13.02MB (13655222) total, 4.26MB (4467036) headers (space savings 42.74%), 7.68MB (8053248) data
                     min         max         mean         sd        +/- sd
time for request:     5.21ms     54.09ms     23.13ms      8.50ms    65.24%
time for connect:     4.80ms    112.04ms     31.26ms     31.26ms    82.00%
time to 1st byte:    29.47ms    125.72ms     52.36ms     27.12ms    80.00%
req/s           :     401.28      439.88      418.74        8.97    64.00%
`;

Deno.test("h2load's report is read into req/s, mean time per request, failures and the TLS it agreed on", () => {
  const r = parseH2load(H2LOAD_OUTPUT);
  assert.equal(r.requestsPerSec, 20972);
  assert.equal(r.requests, 62916);
  assert.equal(r.seconds, 3.01);
  assert.equal(r.meanMs, 23.13);
  assert.equal(r.errors, 0);
  assert.equal(r.non2xx, 0);
  // No percentiles in h2load's report: none are made up.
  assert.ok(Number.isNaN(r.p50) && Number.isNaN(r.p99));
  assert.deepEqual(r.negotiated, {
    protocol: "TLSv1.3",
    cipher: "TLS_AES_128_GCM_SHA256",
    key: "X25519 253 bits",
    alpn: "h2",
  });
});

Deno.test("h2load's failed requests and non-2xx answers count as errors", () => {
  const r = parseH2load(
    H2LOAD_OUTPUT.replace(
      "62916 succeeded, 0 failed, 0 errored",
      "62816 succeeded, 100 failed, 40 errored",
    ).replace("62916 2xx, 0 3xx, 0 4xx, 0 5xx", "62856 2xx, 0 3xx, 0 4xx, 60 5xx"),
  );
  assert.equal(r.errors, 100);
  assert.equal(r.non2xx, 60);
  assert.equal(r.requests, 62816);
});

Deno.test("an h2load run that fell back to HTTP/1.1, or printed no result, is an error", () => {
  assert.throws(
    () =>
      parseH2load(
        H2LOAD_OUTPUT.replace("Application protocol: h2", "Application protocol: http/1.1"),
      ),
    /chose http\/1\.1 over h2/,
  );
  assert.throws(() => parseH2load("connect to 127.0.0.1:1 failed\n"), /no "finished in"/);
});

Deno.test("h2load runs one thread for a duration, or a request count when it has no -D", () => {
  const o = { url: "https://127.0.0.1:1/", clients: 50, streams: 10, duration: 5 };
  assert.deepEqual(h2loadArgs({ ...o, hasDuration: true }), [
    "-t",
    "1",
    "-c",
    "50",
    "-m",
    "10",
    "-D",
    "5",
    "https://127.0.0.1:1/",
  ]);
  assert.deepEqual(h2loadArgs({ ...o, hasDuration: false }).slice(6, 8), ["-n", "100000"]);
});

Deno.test("--only lb selects every lb target, lb:round-robin only itself", () => {
  assert.equal(selected("lb:maglev", ["lb"]), true);
  assert.equal(selected("lb:round-robin+log", ["lb"]), true);
  assert.equal(selected("lb:round-robin+log", ["lb:round-robin"]), false);
  assert.equal(selected("lean-node", ["lean"]), false);
  assert.equal(selected("nginx", undefined), true);
  assert.equal(selected("mem", ["lb", "lean"]), false);
});

Deno.test("--only tls selects every TLS target, and the ids from before TLS select none of them", () => {
  for (const id of ["lb:tls", "nginx:tls", "haproxy:tls", "lean:tls", "deno:tls"]) {
    assert.equal(selected(id, ["tls"]), true, id);
    assert.equal(selected(id, undefined), true, id);
  }
  assert.equal(selected("lb:tls", ["lb:tls"]), true);
  assert.equal(selected("nginx:tls", ["lb:tls"]), false);
  // `lb`, `lean` and `nginx` keep measuring what they did before there were TLS targets.
  assert.equal(selected("lb:tls", ["lb"]), false);
  assert.equal(selected("lean:tls", ["lean"]), false);
  assert.equal(selected("nginx:tls", ["nginx"]), false);
  assert.equal(selected("nginx", ["tls"]), false);
  assert.equal(selected("lb:round-robin", ["tls"]), false);
});

Deno.test("--only takes the TLS ids beside the old ones and refuses unknown ones", () => {
  const only = (list: string) => {
    const s = parseSettings(["--only", list]);
    assert.notEqual(s, "help");
    return (s as Exclude<typeof s, "help">).only;
  };
  assert.deepEqual(only("lb:tls, nginx:tls,haproxy:tls"), ["lb:tls", "nginx:tls", "haproxy:tls"]);
  assert.deepEqual(only("tls,lean:tls,deno:tls"), ["tls", "lean:tls", "deno:tls"]);
  assert.deepEqual(only("lb:round-robin+routes,lean,mem"), [
    "lb:round-robin+routes",
    "lean",
    "mem",
  ]);
  for (const bad of ["direct:tls", "tls:lb", "https", "lean-node:tls"]) {
    assert.throws(() => parseSettings(["--only", bad]), UsageError, bad);
  }
  assert.throws(() => parseSettings(["--only", "lb-tls"]), /tls, lb:tls, nginx:tls/);
});

const wrk = (rps: number, p99 = 2): WrkResult => ({
  requestsPerSec: rps,
  p50: 1,
  p75: 1,
  p90: 1,
  p99,
  requests: rps,
  seconds: 1,
  errors: 0,
  non2xx: 0,
});

function target(id: string, rounds: WrkResult[], kind?: TlsKind): TargetResult {
  const t: TargetResult = { id, label: id, kind, rounds };
  summarize(t);
  return t;
}

/** A TLS row: `server` (like "lb:tls") measured as `kind`. */
const tlsTarget = (server: string, kind: TlsKind, rounds: WrkResult[]) =>
  target(`${server}/${kind}`, rounds, kind);

const h2 = (rps: number, meanMs = 20) => ({ ...wrk(rps, NaN), p50: NaN, meanMs });

Deno.test("targets use medians over rounds and name the worst strategy", () => {
  const results = [
    target("nginx", [wrk(20000, 2)]),
    target("lean", [wrk(9000), wrk(10000), wrk(11000)]),
    target("lb:round-robin", [wrk(9600, 2.5), wrk(9500, 2.5), wrk(1, 2.5)]),
    target("lb:maglev", [wrk(8000, 4)]),
    target("lb:round-robin+log", [wrk(1000)]),
    target("lb:round-robin+workers", [wrk(500)]),
  ];
  assert.equal(results[1].median!.requestsPerSec, 10000);
  assert.equal(results[2].median!.requestsPerSec, 9500);
  addRatios(results);
  const checks = checkTargets(results, { notes: [] });
  const byName = (s: string) => checks.find((c) => c.name.includes(s))!;
  assert.equal(byName("≥ 95%").status, "PASS");
  assert.equal(byName("70% of nginx").status, "MISS");
  assert.match(byName("70% of nginx").detail, /^48%/);
  // The access-log and --workers targets are not strategies: maglev (8,000 against
  // round-robin's 9,500) is the slowest.
  assert.equal(byName("within 10%").status, "MISS");
  assert.match(byName("within 10%").detail, /lb:maglev 84%/);
  assert.equal(byName("p99").status, "PASS");
  assert.equal(byName("RSS ≤ 150 MB").status, "SKIP");
  assert.equal(byName("--workers 2").status, "SKIP");
});

Deno.test("--workers 2 is judged against one lb process under the same two-thread load, with nginx's own ratio beside it", () => {
  const run = (w2: number) => {
    const results = [
      target("lb:round-robin+workers", [wrk(w2), wrk(w2)]),
      target("lb:round-robin+workers@1", [wrk(20000), wrk(20000)]),
      target("nginx+workers", [wrk(44000), wrk(44000)]),
      target("nginx+workers@1", [wrk(40000), wrk(40000)]),
      target("lean", [wrk(20000), wrk(20000)]),
    ];
    addRatios(results);
    return {
      results,
      check: checkTargets(results, { notes: [] }).find((c) => c.name.includes("--workers 2"))!,
    };
  };
  const pass = run(26000);
  assert.equal(pass.check.status, "PASS");
  assert.match(
    pass.check.detail,
    /^1\.30× \(26,000 vs 20,000 req\/s; nginx 2 workers 1\.10× its 1 worker\)/,
  );
  // The two-thread rows compare with nginx's one worker under that load, not with plain nginx.
  assert.equal(pass.results[0].ratios!.vsNginx, 0.65);
  assert.equal(pass.results[0].ratios!.vsLean, undefined);
  assert.equal(run(25000).check.status, "MISS");
});

Deno.test("a TLS row is compared with nginx's row of the same measurement, not with plain nginx", () => {
  const results = [
    target("nginx", [wrk(30000, 2)]),
    target("lean", [wrk(20000)]),
    tlsTarget("nginx:tls", "keepalive", [wrk(20000, 4), wrk(10000, 4)]),
    tlsTarget("lean:tls", "keepalive", [wrk(8000), wrk(8000)]),
    tlsTarget("lb:tls", "keepalive", [wrk(13000, 6), wrk(6000, 6)]),
    tlsTarget("nginx:tls", "h2", [h2(20000), h2(20000)]),
    tlsTarget("lb:tls", "h2", [h2(8000, 50), h2(12000, 40)]),
  ];
  addRatios(results);
  const lb = results[4];
  // Per round 65% and 60%: the median of the two, against nginx over TLS (not 30,000).
  assert.equal(lb.ratios!.vsNginx, 0.625);
  assert.equal(lb.ratios!.p99VsNginx, 1.5);
  assert.equal(lb.ratios!.vsLean, (13000 / 8000 + 6000 / 8000) / 2);
  // h2load has no percentiles: no p99 ratio, rather than NaN; its mean is kept.
  const lbH2 = results[6];
  assert.equal(lbH2.ratios!.vsNginx, 0.5);
  assert.equal(lbH2.ratios!.p99VsNginx, undefined);
  assert.equal(lbH2.median!.meanMs, 45);
  assert.equal(lbH2.ratios!.vsLean, undefined);
});

Deno.test("the TLS targets pass, miss and skip on 60% and 50% of nginx's req/s", () => {
  const results = [
    tlsTarget("nginx:tls", "keepalive", [wrk(20000)]),
    tlsTarget("lb:tls", "keepalive", [wrk(11000)]),
    tlsTarget("nginx:tls", "new-conn", [wrk(2000)]),
    tlsTarget("lb:tls", "new-conn", [wrk(1000)]),
    tlsTarget("nginx:tls", "h2", [h2(20000)]),
    { id: "lb:tls/h2", label: "lb", kind: "h2", skipped: "h2load is not installed", rounds: [] },
    // The TLS rows are not strategies: lb:round-robin alone is judged at 85%, though lb
    // over TLS runs at 50% of the lean proxy over TLS.
    tlsTarget("lean:tls", "keepalive", [wrk(22000)]),
    target("lean", [wrk(10000)]),
    target("lb:round-robin", [wrk(9000)]),
    target("lb:maglev", [wrk(8800)]),
  ] as TargetResult[];
  addRatios(results);
  const checks = checkTargets(results, { notes: [] });
  const byName = (s: string) => checks.find((c) => c.name.includes(s))!;
  assert.equal(byName("HTTPS keep-alive").status, "MISS");
  assert.match(byName("HTTPS keep-alive").detail, /^55% \(11,000 vs 20,000 req\/s/);
  assert.equal(byName("new TLS connections").status, "PASS");
  assert.match(byName("new TLS connections").detail, /^50%/);
  assert.equal(byName("HTTP/2").status, "SKIP");
  assert.match(byName("HTTP/2").detail, /h2load is not installed/);
  // lb over TLS (at 55% of lb:round-robin here) is not a strategy: maglev is the slowest.
  assert.equal(byName("within 10%").status, "PASS");
  assert.match(byName("within 10%").detail, /lb:maglev 98%/);
});

Deno.test("the TLS tables show each measurement apart, CPU per request, and h2load's mean", () => {
  const nginx = tlsTarget("nginx:tls", "h2", [{ ...h2(20000, 25), cpuUs: 41 } as WrkResult]);
  const results = [
    tlsTarget("nginx:tls", "keepalive", [wrk(20000, 4)]),
    tlsTarget("lb:tls", "keepalive", [wrk(12000, 6)]),
    nginx,
    tlsTarget("lb:tls", "h2", [h2(10000, 50)]),
  ];
  results.forEach((r) => r.label = r.id.startsWith("lb") ? "lb round-robin" : "nginx");
  addRatios(results);
  const text = formatTlsTables(results, 50);
  assert.match(text, /^HTTPS keep-alive \(wrk -t1 -c50\):$/m);
  assert.match(text, /^HTTP\/2 \(h2load -t1 -c50 -m10\):$/m);
  assert.doesNotMatch(text, /new TLS connections/);
  assert.match(text, /^lb round-robin\s+12,000 .* 60%/m);
  assert.match(text, /^nginx\s+20,000\s+-\s+-\s+0\s+41µs\s+100%/m);
  assert.match(text, /mean time per request: nginx 25\.00ms, lb round-robin 50\.00ms/);
  const md = formatTlsMarkdown(results);
  assert.match(md, /^\| HTTP\/2 \| lb round-robin \| 10,000 \|/m);
});

Deno.test("memory targets pass and miss on the thresholds of issues 7 and 16", () => {
  const body = (rise: number) => ({
    bytes: 1,
    complete: true,
    status: 200,
    rssBefore: 0,
    peakSampled: rise,
    rise,
    seconds: 1,
  });
  const checks = checkTargets([], {
    notes: [],
    connections: {
      connections: 1000,
      idleRss: 50e6,
      peakHwm: 160e6,
      peakSampled: 110e6,
      requestsPerSec: 1,
      errors: 0,
    },
    idle: {
      connections: 10_000,
      targets: [
        { label: "lb", rssBefore: 75e6, rssAfter: 320e6, rssSettled: 290e6 },
        { label: "Deno.serve alone", rssBefore: 40e6, rssAfter: 330e6 },
      ],
    },
    upload: body(10e6),
    download: body(40e6),
  });
  assert.equal(checks.find((c) => c.name.includes("150 MB"))!.status, "MISS");
  // lb's row is judged, not a reference's.
  const idle = checks.find((c) => c.name.includes("10,000 idle"))!;
  assert.equal(idle.status, "PASS");
  // Judged on the RSS after the idle wait, with the one right after the burst beside it.
  assert.equal(idle.detail, "290.0 MB after ~40 s idle, 320.0 MB at 1 s (75.0 MB before)");
  const b = checks.find((c) => c.name.includes("1 GiB"))!;
  assert.equal(b.status, "MISS");
  assert.match(b.detail, /download \+40\.0 MB/);
});

Deno.test("a ratio is the median of per-round ratios, so load that comes and goes cancels out", () => {
  const results = [
    target("lean", [wrk(10000), wrk(20000), wrk(30000)]),
    target("lb:round-robin", [wrk(9600), wrk(19200), wrk(9000)]),
  ];
  addRatios(results);
  // Ratio of medians would say 9600 / 20000 = 48%; round by round it is 96%, 96%, 30%.
  assert.equal(results[1].ratios!.vsLean, 0.96);
  assert.equal(checkTargets(results, { notes: [] })[0].status, "PASS");
});

Deno.test("the table shows ratios to nginx and to the lean proxy, and why a target was skipped", () => {
  const results = [
    target("nginx", [wrk(20000)]),
    target("lean", [wrk(5000)]),
    { id: "haproxy", label: "HAProxy", skipped: "not installed", rounds: [] },
  ];
  addRatios(results);
  const text = formatTable(results);
  assert.match(text, /^lean .*\b25%\s+100%/m);
  assert.match(text, /HAProxy\s+skipped: not installed/);
});

Deno.test("the generated lb config is valid lb config with admin off and limits raised", () => {
  const config = parseConfig(
    lbConfig({
      port: 18080,
      strategy: "maglev",
      backends: [{ host: "127.0.0.1", port: 1 }, { host: "127.0.0.1", port: 2 }],
      accessLog: false,
      generousLimits: true,
    }),
    "bench",
  );
  assert.equal(config.listen.port, 18080);
  assert.equal(config.strategy, "maglev");
  assert.equal(config.admin.enabled, false);
  assert.equal(config.log.access, false);
  assert.ok(config.limits.maxBodyBytes > 1024 ** 3);
  assert.ok(config.limits.maxConnectionsPerClient > 1000);
  assert.deepEqual(config.backends!.map((b) => b.url), [
    "http://127.0.0.1:1",
    "http://127.0.0.1:2",
  ]);
});

async function nginxTest(dir: string, conf: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/nginx.conf`, conf);
  const out = await new Deno.Command("nginx", {
    args: ["-t", "-p", dir, "-e", `${dir}/err.log`, "-c", `${dir}/nginx.conf`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
}

Deno.test("the generated lb config serves HTTPS with the benchmark's certificate", () => {
  const tls = { cert: "/x/cert.pem", key: "/x/key.pem", pem: "/x/cert+key.pem" };
  const config = parseConfig(
    lbConfig({
      port: 18443,
      strategy: "round-robin",
      backends: [{ host: "127.0.0.1", port: 1 }],
      accessLog: false,
      tls,
    }),
    "bench",
  );
  assert.equal(config.listen.tls?.cert, "/x/cert.pem");
  assert.equal(config.listen.tls?.key, "/x/key.pem");
});

Deno.test("the generated nginx config passes nginx -t", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await nginxTest(dir, nginxConfig(dir, 18081, [{ host: "127.0.0.1", port: 1 }]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the generated nginx HTTPS config passes nginx -t and asks for TLS 1.3 and HTTP/2", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tls = await makeCertificate(dir);
    const conf = nginxConfig(dir, 18081, [{ host: "127.0.0.1", port: 1 }], tls);
    assert.match(conf, /listen 127\.0\.0\.1:18081 ssl http2;/);
    assert.match(conf, /ssl_protocols TLSv1\.2 TLSv1\.3;/);
    assert.match(conf, new RegExp(`pid ${dir}/nginx-tls\\.pid`));
    await nginxTest(dir, conf);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function haproxyCheck(dir: string, conf: string): Promise<void> {
  await Deno.writeTextFile(`${dir}/h.cfg`, conf);
  const out = await new Deno.Command("haproxy", {
    args: ["-c", "-f", `${dir}/h.cfg`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  assert.doesNotMatch(text, /WARNING/, text);
}

Deno.test("the generated HAProxy config passes haproxy -c", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await haproxyCheck(dir, haproxyConfig(18082, [{ host: "127.0.0.1", port: 1 }]));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the generated HAProxy HTTPS config passes haproxy -c with the one-file certificate", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tls = await makeCertificate(dir);
    const pem = await Deno.readTextFile(tls.pem);
    assert.match(pem, /BEGIN CERTIFICATE[^]*BEGIN PRIVATE KEY/);
    const conf = haproxyConfig(18082, [{ host: "127.0.0.1", port: 1 }], tls);
    assert.match(conf, /bind 127\.0\.0\.1:18082 ssl crt \S+ alpn h2,http\/1\.1/);
    await haproxyCheck(dir, conf);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the throwaway certificate is EC P-256 for localhost and 127.0.0.1", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const tls = await makeCertificate(dir);
    const out = await new Deno.Command("openssl", {
      args: ["x509", "-in", tls.cert, "-noout", "-text"],
      stdout: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /NIST CURVE: P-256|prime256v1/);
    assert.match(text, /DNS:localhost, IP Address:127\.0\.0\.1/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a profile is summed into self and total time per function, idle apart", () => {
  const frame = (functionName: string, url = "", lineNumber = 0) => ({
    functionName,
    url,
    lineNumber,
    columnNumber: 0,
  });
  const s = summarizeProfile({
    startTime: 0,
    endTime: 100,
    nodes: [
      { id: 1, callFrame: frame("(root)"), children: [2, 4] },
      { id: 2, callFrame: frame("handle", "file:///x/src/app.ts", 9), children: [3] },
      { id: 3, callFrame: frame("pick", "file:///x/src/balancer.ts", 0) },
      { id: 4, callFrame: frame("(idle)") },
    ],
    samples: [2, 3, 3, 4],
    timeDeltas: [1000, 2000, 3000, 4000],
  });
  assert.equal(s.totalMs, 10);
  assert.equal(s.idleMs, 4);
  const self = Object.fromEntries(s.selfByFunction.map((r) => [r.name, r.ms]));
  assert.deepEqual(self, { "handle src/app.ts:10": 1, "pick src/balancer.ts:1": 5 });
  const total = Object.fromEntries(s.totalByFunction.map((r) => [r.name, r.ms]));
  assert.equal(total["handle src/app.ts:10"], 6);
  assert.equal(s.selfByFunction[0].share, 5 / 6);
});

Deno.test("stopAll stops every process the benchmark started, and memoryOf reads its RSS", async () => {
  const dir = await Deno.makeTempDir();
  const procs = new Procs(dir);
  try {
    const port = freePort();
    const server = procs.spawn("server", Deno.execPath(), [
      "eval",
      `Deno.serve({ hostname: "127.0.0.1", port: ${port}, onListen() {} }, () => new Response("ok"))`,
    ]);
    const sleeper = procs.spawn("sleeper", "sleep", ["60"]);
    await waitForPort(server, port);
    assert.ok(memoryOf(server.pid)!.rss > 1e6);
    await procs.stopAll();
    assert.equal(server.exited, true);
    assert.equal(sleeper.exited, true);
    assert.equal(memoryOf(sleeper.pid), undefined);
  } finally {
    await procs.stopAll();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the WebSocket target compares lb's messages per second with nginx's, and its lines say RSS per idle socket", () => {
  const rows = (lb: number) => ({
    connections: 1000,
    seconds: 5,
    rows: [
      { label: "nginx (1 worker)", messagesPerSec: 40_000, p50: 20, p99: 60 },
      { label: "lb round-robin", messagesPerSec: lb, p50: 13, p99: 500 },
    ],
    idle: { connections: 1000, rssBefore: 100e6, rss: 100e6 + 1000 * 25 * 1024 },
    notes: [],
  });
  const name = "WebSocket messages per second ≥ 50% of nginx's";
  const pass = checkTargets([], { notes: [] }, undefined, rows(28_000)).find((c) =>
    c.name === name
  )!;
  assert.equal(pass.status, "PASS");
  assert.match(pass.detail, /^70%/);
  const miss = checkTargets([], { notes: [] }, undefined, rows(10_000)).find((c) =>
    c.name === name
  )!;
  assert.equal(miss.status, "MISS");
  const skip = checkTargets([], { notes: [] }).find((c) => c.name === name)!;
  assert.equal(skip.status, "SKIP");
  const lines = webSocketLines(rows(28_000));
  assert.match(lines[1], /lb round-robin\s+28,000 msg\/s\s+p50 13\.00ms\s+p99 500\.00ms/);
  assert.match(lines[2], /1,000 idle WebSockets: RSS 126 MB \(100 MB before; 25\.0 KiB each\)/);
});

Deno.test("the benchmark's plot has a req/s bar and a p99 bar per plain-HTTP target, and nothing else", async () => {
  const { plotSvg } = await import("../bench/_plot.ts");
  const round = (requestsPerSec: number, p99: number) => ({
    requestsPerSec,
    p50: p99 / 3,
    p75: p99 / 2,
    p90: p99 / 1.5,
    p99,
    requests: requestsPerSec * 5,
    seconds: 5,
    errors: 0,
    non2xx: 0,
  });
  const target = (id: string, label: string, rps: number, p99: number, kind?: TlsKind) => ({
    id,
    label,
    kind,
    rounds: [round(rps, p99)],
    median: { requestsPerSec: rps, p50: p99 / 3, p99, errors: 0 },
  });
  const svg = plotSvg([
    target("nginx", "nginx (1 worker)", 30000, 4),
    target("lean", "lean <fetch>", 12000, 12),
    target("lb:round-robin", "lb round-robin", 20000, 6),
    target("lb:tls/keepalive", "lb https", 9000, 9, "keepalive" as TlsKind),
    { id: "haproxy", label: "HAProxy", skipped: "not installed", rounds: [] },
  ], "machine: test & co");
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.equal(svg.match(/<rect /g)!.length, 1 + 3 * 2, "a background and two bars per target");
  assert.match(svg, /lean &lt;fetch&gt;/);
  assert.match(svg, /machine: test &amp; co/);
  assert.match(svg, />30,000</);
  assert.ok(!svg.includes(">lb https<") && !svg.includes(">HAProxy<"));
  // nginx has the longest req/s bar (300 px), lb's is two thirds of it.
  assert.match(svg, /width="300\.0" height="14" fill="#9ca3af"/);
  assert.match(svg, /width="200\.0" height="14" fill="#2563eb"/);
});
