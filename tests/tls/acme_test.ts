/**
 * The ACME manager against a real pebble: issuance, the stored certificate on restart,
 * renewal (forced and at two thirds of the lifetime), real http-01 validation with backoff,
 * and the one-line errors of a CA that cannot be reached or trusted.
 */
import assert from "node:assert/strict";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { type AcmeConfig, acmeSchema } from "../../src/config/tls.ts";
import {
  AcmeError,
  AcmeManager,
  type AcmeOptions,
  challengeResponse,
  ChallengeStore,
  type PemPair,
  renewalTime,
} from "../../src/tls/acme.ts";
import { freePort, until } from "../_stack.ts";
import { type Pebble, startPebble } from "./_pebble.ts";

type Why = "stored" | "issued" | "renewed";

/** A manager whose installs and log lines the test can read. */
function manager(config: AcmeConfig, extra: Partial<AcmeOptions> = {}) {
  const installs: { pair: PemPair; why: Why }[] = [];
  const events: { message: string; fields?: Record<string, unknown> }[] = [];
  const errors: { message: string; fields?: Record<string, unknown> }[] = [];
  const challenges = new ChallengeStore();
  const m = new AcmeManager({
    config,
    challenges,
    install: (pair, why) => void installs.push({ pair, why }),
    log: {
      event: (_kind, message, fields) => void events.push({ message, fields }),
      error: (message, fields) => void errors.push({ message, fields }),
    },
    ...extra,
  });
  return { m, installs, events, errors, challenges };
}

function acmeConfig(pebble: Pebble, storage: string, domains: string[]): AcmeConfig {
  return acmeSchema.parse({
    directory: pebble.directory,
    email: "ops@example.com",
    domains,
    storage,
    caBundle: pebble.caFile,
  });
}

/** The certificates of a PEM chain, leaf first. */
function chain(pem: string): X509Certificate[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)]
    .map((m) => new X509Certificate(m[0]));
}

function sans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? "").split(", ").map((n) => n.replace(/^DNS:/, ""));
}

async function mode(path: string): Promise<string> {
  return ((await Deno.stat(path)).mode! & 0o777).toString(8);
}

function assertOneLine(e: unknown, kind: string): AcmeError {
  assert.ok(e instanceof AcmeError, `expected an AcmeError, got ${e}`);
  assert.equal(e.kind, kind, e.message);
  assert.doesNotMatch(e.message, /\n|\s+at \S+ \(/, "one line, no stack");
  return e;
}

Deno.test("ACME against pebble: issues, serves the stored certificate on restart, renews", async (t) => {
  const pebble = await startPebble({ alwaysValid: true });
  const dir = await Deno.makeTempDir({ prefix: "lb-acme-" });
  const storage = join(dir, "acme"); // missing: the manager creates it
  const domains = ["lb.acme.test", "www.lb.acme.test"];
  const config = acmeConfig(pebble, storage, domains);
  let firstSerial = "";
  try {
    await t.step("start() issues a certificate for the domains and stores it", async () => {
      const { m, installs, events } = manager(config);
      try {
        await m.start();
      } finally {
        m.stop();
      }
      assert.deepEqual(installs.map((i) => i.why), ["issued"]);
      const { cert, key } = installs[0].pair;
      const [leaf, ...issuers] = chain(cert);
      assert.deepEqual(sans(leaf), domains);
      assert.ok(leaf.checkPrivateKey(createPrivateKey(key)), "the key belongs to the leaf");
      assert.ok(issuers.length >= 1 && leaf.checkIssued(issuers[0]), "chain has the issuer");
      assert.equal(m.current?.serial, leaf.serialNumber.toUpperCase());
      assert.deepEqual(m.current?.domains, domains);
      assert.equal(m.current?.notAfter.getTime(), new Date(leaf.validTo).getTime());
      firstSerial = leaf.serialNumber;
      const issued = events.find((e) => e.fields?.why === "issued");
      assert.equal(issued?.fields?.renewAt, new Date(renewalTime(m.current!)).toISOString());

      assert.equal(await mode(storage), "700");
      assert.equal(await mode(join(storage, "key.pem")), "600");
      assert.equal(await mode(join(storage, "account.json")), "600");
      assert.equal(await Deno.readTextFile(join(storage, "cert.pem")), cert);
      assert.equal(await Deno.readTextFile(join(storage, "key.pem")), key);
      const account = JSON.parse(await Deno.readTextFile(join(storage, "account.json")));
      assert.equal(account.directory, pebble.directory);
      assert.match(account.url, /^https:\/\/127\.0\.0\.1:\d+\/my-account\//);
      assert.deepEqual(
        (await Array.fromAsync(Deno.readDir(storage))).map((e) => e.name).sort(),
        ["account.json", "cert.pem", "key.pem"],
        "no temp files left",
      );
      assert.equal(pebble.count(/POST \/order-plz/), 1);
    });

    await t.step("a restart installs the stored certificate without asking the CA", async () => {
      const requests = pebble.count(/calling handler/);
      const { m, installs } = manager(config);
      try {
        await m.start();
      } finally {
        m.stop();
      }
      assert.deepEqual(installs.map((i) => i.why), ["stored"]);
      assert.equal(chain(installs[0].pair.cert)[0].serialNumber, firstSerial);
      assert.equal(pebble.count(/calling handler/), requests, "no request reached pebble");
    });

    await t.step("renew() issues a new certificate on the same account", async () => {
      const account = await Deno.readTextFile(join(storage, "account.json"));
      // Without the email now: the account's contact is updated to none, not refused.
      const { m, installs } = manager({ ...config, email: undefined });
      try {
        await m.start();
        await m.renew();
      } finally {
        m.stop();
      }
      assert.deepEqual(installs.map((i) => i.why), ["stored", "renewed"]);
      const serial = chain(installs[1].pair.cert)[0].serialNumber;
      assert.notEqual(serial, firstSerial);
      assert.equal(m.current?.serial, serial.toUpperCase());
      assert.equal(
        chain(await Deno.readTextFile(join(storage, "cert.pem")))[0].serialNumber,
        serial,
      );
      assert.equal(await Deno.readTextFile(join(storage, "account.json")), account);
      assert.equal(pebble.count(/There are now \d+ accounts/), 1, "one account in all");
      assert.equal(pebble.count(/POST \/order-plz/), 2);
    });

    await t.step(
      "a certificate is renewed when two thirds of its lifetime have passed",
      async () => {
        const stored = await Deno.readTextFile(join(storage, "cert.pem"));
        const leaf = chain(stored)[0];
        const from = new Date(leaf.validFrom).getTime();
        const due = from + (new Date(leaf.validTo).getTime() - from) * 2 / 3;
        const skew = due - 300 - Date.now(); // the manager's clock: renewal due in 300 ms
        const { m, installs } = manager(config, { now: () => Date.now() + skew });
        try {
          await m.start();
          await until(() => installs.length === 2, "the renewal", 10_000);
        } finally {
          m.stop();
        }
        assert.deepEqual(installs.map((i) => i.why), ["stored", "renewed"]);
        assert.notEqual(chain(installs[1].pair.cert)[0].serialNumber, leaf.serialNumber);
      },
    );

    await t.step(
      "an expired stored certificate is replaced before anything is served",
      async () => {
        const leaf = chain(await Deno.readTextFile(join(storage, "cert.pem")))[0];
        const after = new Date(leaf.validTo).getTime() + 1000 - Date.now();
        const { m, installs, events } = manager(config, { now: () => Date.now() + after });
        try {
          await m.start();
        } finally {
          m.stop();
        }
        assert.deepEqual(installs.map((i) => i.why), ["issued"]);
        assert.ok(events.some((e) => /not used: it expired/.test(e.message)));
      },
    );

    await t.step("a CA whose HTTPS is not trusted is refused in one line", async () => {
      const { caBundle: _, ...untrusted } = config;
      const { m, installs } = manager({ ...untrusted, storage: join(dir, "untrusted") });
      const e = await m.start().then(() => undefined, (e) => e);
      m.stop();
      assertOneLine(e, "unreachable");
      assert.match(e.message, /^cannot reach the ACME CA at https:\/\/127\.0\.0\.1:\d+\/dir: /);
      assert.match(e.message, /certificate.*acme\.caBundle/);
      assert.equal(installs.length, 0);
    });

    await t.step("stop() cancels the order in progress and schedules nothing", async () => {
      const ref: { m?: AcmeManager } = {};
      const tokens = new Set<string>();
      // Stops the manager in the middle of its order: after the CA created the order and
      // offered its challenges, before lb has told it to validate them.
      class StopOnChallenge extends ChallengeStore {
        override set(token: string, keyAuthorization: string): void {
          super.set(token, keyAuthorization);
          tokens.add(token);
          ref.m?.stop();
        }
      }
      const challenges = new StopOnChallenge();
      const [orders, issued] = [
        pebble.count(/POST \/order-plz/),
        pebble.count(/Issued certificate/),
      ];
      const made = manager(acmeConfig(pebble, join(dir, "stopped"), domains), {
        challenges,
        log: { event: () => {}, error: () => assert.fail("a stopped order is not retried") },
      });
      const m = ref.m = made.m;
      const e = await m.start().then(() => undefined, (e) => e);
      assertOneLine(e, "stopped");
      assert.equal(made.installs.length, 0);
      assert.equal(pebble.count(/POST \/order-plz/), orders + 1, "the order was placed");
      assert.equal(pebble.count(/Issued certificate/), issued, "and never finished");
      assert.ok(tokens.size > 0 && [...tokens].every((t) => challenges.get(t) === undefined));
      await assert.rejects(m.renew(), (e) => e instanceof AcmeError && e.kind === "stopped");
    });

    await t.step("a wildcard domain is refused: it cannot be validated over http-01", async () => {
      const wild = acmeConfig(pebble, join(dir, "wild"), ["*.wild.acme.test"]);
      const { m } = manager(wild);
      const e = await m.start().then(() => undefined, (e) => e);
      m.stop();
      assertOneLine(e, "challenge");
      assert.match(e.message, /no http-01 challenge for \*\.wild\.acme\.test/);
    });
  } finally {
    await pebble.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME http-01: the CA's validation fails while nothing answers, retries with backoff, then succeeds", async () => {
  const pebble = await startPebble({ alwaysValid: false });
  const dir = await Deno.makeTempDir({ prefix: "lb-acme-" });
  const domains = ["va.acme.test"];
  const { m, installs, errors, challenges } = manager(acmeConfig(pebble, dir, domains), {
    backoffMs: 200,
  });
  let server: Deno.HttpServer | undefined;
  const asked: string[] = [];
  try {
    const e = await m.start().then(() => undefined, (e) => e);
    assertOneLine(e, "challenge");
    assert.match(e.message, /^the CA could not validate va\.acme\.test over http-01: .+/);
    assert.equal(installs.length, 0);

    // The retry is scheduled: it fails too (nothing answers yet) and the next wait doubles.
    await until(() => errors.length >= 2, "the second failed order", 10_000);
    assert.deepEqual(errors.map((e) => e.fields?.retryInMs), [200, 400]);
    assert.match(errors[0].message, /next try in 0\.2 s$/);

    server = Deno.serve(
      { hostname: "127.0.0.1", port: pebble.httpPort, onListen() {} },
      (req) => {
        const path = new URL(req.url).pathname;
        asked.push(`${req.headers.get("host")} ${path}`);
        return challengeResponse(challenges, path) ?? new Response("not found", { status: 404 });
      },
    );
    await until(() => installs.length === 1, "the certificate after validation", 10_000);
    assert.equal(installs[0].why, "issued");
    assert.deepEqual(sans(chain(installs[0].pair.cert)[0]), domains);
    assert.ok(
      asked.some((a) =>
        a.startsWith(`va.acme.test:${pebble.httpPort} /.well-known/acme-challenge/`)
      ),
      `pebble's VA fetched the answer: ${asked.join(", ")}`,
    );
    assert.equal(challenges.get(asked[0].split("/").pop()!), undefined, "answers are withdrawn");
  } finally {
    m.stop();
    await server?.shutdown();
    await pebble.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ACME: an unreachable directory URL makes start() reject with one line", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lb-acme-" });
  const directory = `https://127.0.0.1:${freePort()}/dir`;
  const config = acmeSchema.parse({ directory, domains: ["down.acme.test"], storage: dir });
  const { m, errors } = manager(config);
  try {
    const e = await m.start().then(() => undefined, (e) => e);
    const err = assertOneLine(e, "unreachable");
    assert.ok(err.message.startsWith(`cannot reach the ACME CA at ${directory}: `), err.message);
    assert.match(err.message, /refused/i, "says why");
    assert.equal(
      errors[0].fields?.retryInMs,
      60_000,
      "a retry is scheduled at the default backoff",
    );
  } finally {
    m.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("challengeResponse answers only the ACME path, with the stored key authorization", () => {
  const store = new ChallengeStore();
  store.set("tok", "tok.thumb");
  assert.equal(challengeResponse(store, "/index.html"), undefined);
  assert.equal(challengeResponse(store, "/.well-known/acme-challenge/other")?.status, 404);
  const ok = challengeResponse(store, "/.well-known/acme-challenge/tok")!;
  assert.equal(ok.status, 200);
  store.delete("tok");
  assert.equal(challengeResponse(store, "/.well-known/acme-challenge/tok")?.status, 404);
  return ok.text().then((t) => assert.equal(t, "tok.thumb"));
});
