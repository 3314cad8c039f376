/**
 * One certificate order against an ACME CA (RFC 8555 §7.3–7.4) with acme-client: register
 * (or find) the account, order the domains, answer their http-01 challenges through the
 * challenge store, wait for the CA to validate, finalize with a fresh key and download the
 * chain. Keys are ECDSA P-256 (the account's and the certificate's).
 *
 * lb polls the order itself instead of using acme-client's `auto()` and `waitForValidStatus`,
 * whose sleeps nothing can cancel: here every wait ends when the order's signal aborts.
 */
import type * as acme from "acme-client";

/**
 * acme-client, loaded on the first order: it and the Node compatibility layer it pulls in
 * cost about 30 MB of memory, which an lb without ACME should not pay.
 */
const acmeClient = () => import("acme-client");
import type { AcmeAccount } from "./_acme_store.ts";
import type { PemPair } from "./cert_info.ts";

/** What went wrong, for logs and callers; the message is one line. */
export type AcmeErrorKind =
  | "config" // a file lb was told to use cannot be read or made
  | "unreachable" // the CA's HTTPS cannot be reached or is not trusted
  | "ca" // the CA answered with an error, or its answer is unusable
  | "challenge" // the CA could not validate a domain (http-01)
  | "refused" // install() refused the certificate
  | "stopped"; // stop() was called

/** An ACME failure: `kind` says what failed, `message` is one sentence for the log. */
export class AcmeError extends Error {
  constructor(readonly kind: AcmeErrorKind, message: string) {
    super(oneLine(message));
    this.name = "AcmeError";
  }
}

export interface OrderOptions {
  /** The CA's directory URL. */
  directory: string;
  /** PEM certificates trusted for the CA's HTTPS, besides the system roots. */
  ca?: string;
  email?: string;
  domains: string[];
  /** The stored account; a new one (new key) is registered if it is for another CA. */
  account?: AcmeAccount;
  /** Keeps a newly registered account, before the order is placed. */
  saveAccount(a: AcmeAccount): Promise<void>;
  /** Where the http-01 answers go while the CA validates. */
  challenges: { set(token: string, keyAuthorization: string): void; delete(token: string): void };
  signal: AbortSignal;
  /** Longest wait for the CA to validate, and then to issue (ms); default 120 s. */
  pollTimeoutMs?: number;
}

/** Runs one order to the end; throws {@link AcmeError}. */
export async function orderCertificate(o: OrderOptions): Promise<PemPair> {
  const http = Deno.createHttpClient(o.ca === undefined ? {} : { caCerts: [o.ca] });
  try {
    const client = await accountClient(o, http);
    const order = await client.createOrder({
      identifiers: o.domains.map((value) => ({ type: "dns", value })),
    });
    const ready = await validate(client, order, o);
    const { crypto } = await acmeClient();
    const [key, csr] = await crypto.createCsr(
      {
        commonName: o.domains[0].length <= 64 ? o.domains[0] : undefined,
        altNames: [...o.domains],
      },
      await crypto.createPrivateEcdsaKey(),
    );
    const finalized = await client.finalizeOrder(ready, csr);
    const done = await waitWhile(client, finalized, ["ready", "processing"], o);
    if (done.status !== "valid") {
      throw new AcmeError("ca", `the CA did not issue the certificate: ${problem(done.error)}`);
    }
    return { cert: await client.getCertificate(done), key: key.toString() };
  } catch (e) {
    throw asAcmeError(e, o);
  } finally {
    http.close();
  }
}

/** A client for the account: the stored one, or a newly registered (and saved) one. */
async function accountClient(o: OrderOptions, http: Deno.HttpClient): Promise<acme.Client> {
  const stored = o.account?.directory === o.directory ? o.account : undefined;
  const lib = await acmeClient();
  const key = stored?.key ?? (await lib.crypto.createPrivateEcdsaKey()).toString();
  const client = new lib.Client({ directoryUrl: o.directory, accountKey: key });
  sendWithFetch(client, http, o);
  // newAccount with a known key returns that account (RFC 8555 §7.3.1), so asking every time
  // costs a request or two and survives a CA that forgot the account. acme-client then sends
  // the payload again as an account update, so a changed email reaches the CA too; `contact`
  // is always there because an update of nothing but termsOfServiceAgreed is refused as empty.
  await client.createAccount({
    termsOfServiceAgreed: true,
    contact: o.email === undefined ? [] : [`mailto:${o.email}`],
  });
  const url = client.getAccountUrl();
  if (stored?.url !== url) await o.saveAccount({ directory: o.directory, url, key });
  return client;
}

type Request = (url: string, method: string, opts?: { data?: unknown }) => Promise<unknown>;

/**
 * Sends every request of `client` with Deno's fetch, through `http` (which trusts the CA
 * bundle) and with `signal`, instead of through acme-client's axios instance. That instance
 * is process-wide (two managers with different CAs would share its trust), and its retry
 * interceptor sleeps 5–25 s between five retries that nothing can cancel, then reports an
 * unreachable CA as "Cannot read properties of undefined (reading 'config')". lb retries
 * whole orders on its own backoff instead. `Client.http.request(url, method, { data })` is
 * the one function all of acme-client's requests go through; its callers read `status`,
 * `headers` (lower-case names) and `data` (parsed JSON, else text) of what it returns.
 */
function sendWithFetch(client: acme.Client, http: Deno.HttpClient, o: OrderOptions): void {
  const target = (client as unknown as { http?: { request?: Request } }).http;
  if (typeof target?.request !== "function") {
    throw new AcmeError("config", "this acme-client has no Client.http.request; use deno.lock's");
  }
  target.request = async (url, method, opts = {}) => {
    let res: Response;
    try {
      res = await fetch(url, {
        method: method.toUpperCase(),
        headers: { "content-type": "application/jose+json", "user-agent": USER_AGENT },
        body: opts.data === undefined ? undefined : JSON.stringify(opts.data),
        signal: o.signal,
        client: http,
      });
    } catch (e) {
      if (o.signal.aborted) throw e;
      throw new AcmeError(
        "unreachable",
        `cannot reach the ACME CA at ${o.directory}: ${fetchError(e)}`,
      );
    }
    const text = await res.text();
    const json = /json/i.test(res.headers.get("content-type") ?? "") && text !== "";
    return {
      status: res.status,
      headers: Object.fromEntries(res.headers),
      data: json ? JSON.parse(text) : text,
    };
  };
}

/**
 * Why fetch failed, without the URL: Deno's TypeError says only "fetch failed" and keeps the
 * reason in `cause` ("error sending request for url (…): client error (Connect): tcp connect
 * error: Connection refused (os error 111)").
 */
function fetchError(e: unknown): string {
  const cause = (e as { cause?: unknown })?.cause;
  const why = messageOf(cause instanceof Error ? cause : e)
    .replace(/^error sending request for url \([^)]*\): /, "")
    .replace(/^client error \(Connect\): /, "");
  return /peer certificate|UnknownIssuer/i.test(why)
    ? `${why} (acme.caBundle names the CA certificates to trust for it)`
    : why;
}

/** RFC 8555 §6.1: ACME clients must send a User-Agent. */
const USER_AGENT = "lb (acme-client)";

/**
 * Answers the order's pending authorizations over http-01 and waits until the CA has
 * validated them all; returns the order, now `ready`. The answers are withdrawn either way.
 */
async function validate(
  client: acme.Client,
  order: acme.Order,
  o: OrderOptions,
): Promise<acme.Order> {
  const tokens: string[] = [];
  try {
    const chosen = [];
    for (const authz of await client.getAuthorizations(order)) {
      if (authz.status === "valid") continue;
      const ch = authz.challenges.find((c) => c.type === "http-01");
      if (ch === undefined) {
        const why = authz.wildcard ? " (a wildcard needs dns-01, which lb does not answer)" : "";
        throw new AcmeError(
          "challenge",
          `the CA offers no http-01 challenge for ${name(authz)}${why}`,
        );
      }
      o.challenges.set(ch.token, await client.getChallengeKeyAuthorization(ch));
      tokens.push(ch.token);
      chosen.push(ch);
    }
    for (const ch of chosen) await client.completeChallenge(ch);
    const now = await waitWhile(client, order, ["pending"], o);
    if (now.status === "ready") return now;
    throw await validationError(client, now);
  } finally {
    for (const t of tokens) o.challenges.delete(t);
  }
}

/** Why the CA did not validate the order: the first failed challenge's problem. */
async function validationError(client: acme.Client, order: acme.Order): Promise<AcmeError> {
  for (const authz of await client.getAuthorizations(order)) {
    if (authz.status !== "invalid") continue;
    const failed = authz.challenges.find((c) => c.error !== undefined);
    return new AcmeError(
      "challenge",
      `the CA could not validate ${name(authz)} over http-01: ${problem(failed?.error)}`,
    );
  }
  return new AcmeError("ca", `the CA left the order ${order.status}: ${problem(order.error)}`);
}

/** Polls the order while its status is one of `states`; the delays double from 100 ms to 2 s. */
async function waitWhile(
  client: acme.Client,
  order: acme.Order,
  states: string[],
  o: OrderOptions,
): Promise<acme.Order> {
  const limit = o.pollTimeoutMs ?? 120_000;
  const end = Date.now() + limit;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    const now = await client.getOrder(order);
    if (!states.includes(now.status)) return now;
    if (Date.now() + delay > end) {
      throw new AcmeError("ca", `the order was still ${now.status} after ${limit / 1000} s`);
    }
    await sleep(delay, o.signal);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      if (signal.aborted) reject(signal.reason);
      else resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

function name(authz: acme.Authorization): string {
  return (authz.wildcard ? "*." : "") + authz.identifier.value;
}

/** An RFC 7807 problem document as text (`detail`, else its type). */
function problem(p: unknown): string {
  const d = p as { detail?: unknown; type?: unknown } | undefined;
  if (typeof d?.detail === "string" && d.detail !== "") return d.detail;
  if (typeof d?.type === "string") return d.type;
  return "no reason given";
}

/** Any failure of an order as an {@link AcmeError}. */
function asAcmeError(e: unknown, o: OrderOptions): AcmeError {
  if (o.signal.aborted) return new AcmeError("stopped", "the ACME order was stopped");
  if (e instanceof AcmeError) return e;
  return new AcmeError("ca", `the ACME CA at ${o.directory} answered: ${messageOf(e)}`);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** `s` on one line, at most 500 characters: for log lines and the command line. */
export function oneLine(s: string): string {
  const line = s.replace(/\s*[\r\n]+\s*/g, " ").trim();
  return line.length <= 500 ? line : line.slice(0, 497) + "...";
}
