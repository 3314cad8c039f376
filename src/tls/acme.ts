/**
 * Certificates from an ACME CA (RFC 8555) for `listen.tls.acme`: lb serves the certificate
 * it has stored at once, orders one over http-01 when it has none that fits, renews at two
 * thirds of the lifetime, and retries a failed order with exponential backoff.
 *
 * The manager only obtains certificates: lb's `install` callback checks each one and swaps
 * its listener, and lb's plaintext listener answers the CA's http-01 requests from the
 * {@link ChallengeStore} (see {@link challengeResponse}).
 */
import { type AcmeAccount, AcmeStorage } from "./_acme_store.ts";
import { AcmeError, oneLine, orderCertificate } from "./_acme_order.ts";
import { type CertInfo, certInfo, coversDomains, type PemPair } from "./cert_info.ts";
import type { AcmeConfig } from "../config/tls.ts";

export { AcmeError, type AcmeErrorKind } from "./_acme_order.ts";
export type { CertInfo, PemPair } from "./cert_info.ts";

/** Where the CA fetches http-01 answers (RFC 8555 §8.3). */
export const CHALLENGE_PATH = "/.well-known/acme-challenge/";

/** Answers to http-01 challenges, served by lb's plaintext listener at {@link CHALLENGE_PATH}<token>. */
export class ChallengeStore {
  readonly #answers = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.#answers.set(token, keyAuthorization);
  }

  get(token: string): string | undefined {
    return this.#answers.get(token);
  }

  delete(token: string): void {
    this.#answers.delete(token);
  }
}

/**
 * lb's plaintext answer to a request for `pathname`: the key authorization of a token the
 * store holds (200, text/plain), 404 for a token it does not hold, and undefined for a path
 * outside {@link CHALLENGE_PATH}, which lb handles as usual.
 */
export function challengeResponse(store: ChallengeStore, pathname: string): Response | undefined {
  if (!pathname.startsWith(CHALLENGE_PATH)) return undefined;
  const answer = store.get(pathname.slice(CHALLENGE_PATH.length));
  if (answer === undefined) return new Response("no such ACME challenge\n", { status: 404 });
  return new Response(answer, { headers: { "content-type": "text/plain" } });
}

export interface AcmeOptions {
  config: AcmeConfig;
  challenges: ChallengeStore;
  /** Installs a certificate (lb checks it and swaps its listener); throws to refuse it. */
  install(pair: PemPair, why: "stored" | "issued" | "renewed"): Promise<void> | void;
  log: {
    event(kind: string, message: string, fields?: Record<string, unknown>): void;
    error(message: string, fields?: Record<string, unknown>): void;
  };
  /** The clock (epoch ms) for validity and renewal times; default Date.now (tests). */
  now?: () => number;
  /** First retry after a failed order (ms, default 60_000), doubling up to maxBackoffMs (default 6h). */
  backoffMs?: number;
  maxBackoffMs?: number;
}

/** The longest delay setTimeout takes; a later renewal is reached in steps of this. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** When a certificate is renewed: two thirds into its lifetime (epoch ms). */
export function renewalTime(info: CertInfo): number {
  const from = info.notBefore.getTime();
  return from + (info.notAfter.getTime() - from) * 2 / 3;
}

/**
 * Obtains and renews the certificate for `config.domains`. One order runs at a time and
 * one timer is pending at a time (renewal or retry); stop() clears both.
 */
export class AcmeManager {
  readonly #o: AcmeOptions;
  readonly #storage: AcmeStorage;
  readonly #now: () => number;
  readonly #abort = new AbortController();
  #timer?: ReturnType<typeof setTimeout>;
  #order?: Promise<void>;
  #current?: CertInfo;
  #failures = 0;

  constructor(opts: AcmeOptions) {
    this.#o = opts;
    this.#storage = new AcmeStorage(opts.config.storage);
    this.#now = opts.now ?? Date.now;
  }

  /** The certificate in use (for the API and metrics); undefined before the first install. */
  get current(): CertInfo | undefined {
    const c = this.#current;
    return c && { ...c, domains: [...c.domains] };
  }

  /**
   * Installs the stored certificate at once if there is a usable one (it parses, its key
   * matches, it has not expired and it covers the domains), else orders one. Resolves after
   * that first install; rejects with a one-line {@link AcmeError} when the first order fails
   * and nothing usable is stored, with a retry already scheduled (call stop() to give up).
   * Call it once.
   */
  async start(): Promise<void> {
    try {
      await this.#storage.open();
    } catch (e) {
      throw new AcmeError("config", `cannot create ${this.#o.config.storage}: ${messageOf(e)}`);
    }
    if (await this.#installStored()) return;
    await this.#obtain();
  }

  /**
   * Orders a certificate now and installs it; joins the order under way if there is one.
   * On failure it rejects and schedules a retry, as a failed renewal does.
   */
  renew(): Promise<void> {
    return this.#obtain();
  }

  /** Cancels the pending timer and the order in progress; the manager cannot be restarted. */
  stop(): void {
    this.#abort.abort();
    this.#clearTimer();
  }

  async #installStored(): Promise<boolean> {
    const { log, config } = this.#o;
    let pair: PemPair | undefined;
    try {
      pair = await this.#storage.readCertificate();
    } catch (e) {
      log.error(`ACME: cannot read the stored certificate: ${messageOf(e)}`);
    }
    if (pair === undefined) return false;
    const unusable = (why: string) => {
      log.event("acme", `stored certificate in ${config.storage} not used: ${why}`, { why });
      return false;
    };
    let info: CertInfo;
    try {
      info = certInfo(pair);
    } catch (e) {
      return unusable(messageOf(e));
    }
    if (info.notAfter.getTime() <= this.#now()) {
      return unusable(`it expired ${info.notAfter.toISOString()}`);
    }
    if (!coversDomains(info, config.domains)) {
      return unusable(`it is for ${info.domains.join(", ")}, not ${config.domains.join(", ")}`);
    }
    try {
      await this.#o.install(pair, "stored");
    } catch (e) {
      return unusable(`lb refused it: ${messageOf(e)}`);
    }
    this.#installed(info, "stored");
    return true;
  }

  #obtain(): Promise<void> {
    if (this.#abort.signal.aborted) {
      return Promise.reject(new AcmeError("stopped", "the ACME manager was stopped"));
    }
    this.#order ??= this.#runOrder().finally(() => this.#order = undefined);
    return this.#order;
  }

  async #runOrder(): Promise<void> {
    this.#clearTimer();
    const { config, log } = this.#o;
    const why = this.#current === undefined ? "issued" : "renewed";
    const started = performance.now();
    log.event("acme", `ordering a certificate for ${config.domains.join(", ")}`, {
      directory: config.directory,
    });
    try {
      const pair = await this.#orderOnce();
      let info: CertInfo;
      try {
        info = certInfo(pair);
      } catch (e) {
        throw new AcmeError("ca", `the CA's certificate is unusable: ${messageOf(e)}`);
      }
      // Stored before it is installed, so a certificate in use is always the one a restart
      // finds; one that install() refuses is refused again there, and then replaced.
      await this.#storage.writeCertificate(pair).catch((e) =>
        log.error(`ACME: cannot store the certificate in ${config.storage}: ${messageOf(e)}`)
      );
      try {
        await this.#o.install(pair, why);
      } catch (e) {
        throw new AcmeError("refused", `lb refused the new certificate: ${messageOf(e)}`);
      }
      this.#failures = 0;
      this.#installed(info, why, Math.round(performance.now() - started));
    } catch (e) {
      const err = e instanceof AcmeError ? e : new AcmeError("ca", messageOf(e));
      if (this.#abort.signal.aborted) throw new AcmeError("stopped", err.message);
      this.#retryLater(err);
      throw err;
    }
  }

  async #orderOnce(): Promise<PemPair> {
    const { config } = this.#o;
    let ca: string | undefined;
    let account: AcmeAccount | undefined;
    try {
      if (config.caBundle !== undefined) ca = await Deno.readTextFile(config.caBundle);
      account = await this.#storage.readAccount();
    } catch (e) {
      throw new AcmeError("config", messageOf(e));
    }
    return await orderCertificate({
      directory: config.directory,
      ca,
      email: config.email,
      domains: config.domains,
      account,
      saveAccount: (a) =>
        this.#storage.writeAccount(a).catch((e) => {
          throw new AcmeError("config", `cannot store the ACME account: ${messageOf(e)}`);
        }),
      challenges: this.#o.challenges,
      signal: this.#abort.signal,
    });
  }

  #installed(info: CertInfo, why: "stored" | "issued" | "renewed", durationMs?: number): void {
    this.#current = info;
    const renewAt = renewalTime(info);
    this.#o.log.event(
      "acme",
      `certificate ${why} for ${info.domains.join(", ")}, valid until ` +
        `${info.notAfter.toISOString()}, renewal at ${new Date(renewAt).toISOString()}`,
      {
        why,
        serial: info.serial,
        notAfter: info.notAfter.toISOString(),
        renewAt: new Date(renewAt).toISOString(),
        ...(durationMs === undefined ? {} : { durationMs }),
      },
    );
    this.#schedule(renewAt);
  }

  #retryLater(err: AcmeError): void {
    const first = this.#o.backoffMs ?? 60_000;
    const delay = Math.min(first * 2 ** this.#failures, this.#o.maxBackoffMs ?? 6 * 3600_000);
    this.#failures++;
    this.#o.log.error(`ACME: no certificate: ${err.message}; next try in ${human(delay)}`, {
      kind: err.kind,
      failures: this.#failures,
      retryInMs: delay,
    });
    this.#schedule(this.#now() + delay);
  }

  /** Orders at `at` (epoch ms by the manager's clock), replacing any pending timer. */
  #schedule(at: number): void {
    this.#clearTimer();
    if (this.#abort.signal.aborted) return;
    const wait = at - this.#now();
    if (wait > MAX_TIMER_MS) {
      this.#timer = setTimeout(() => this.#schedule(at), MAX_TIMER_MS);
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      // A failure is logged and retried by #runOrder; nobody awaits a timer's order.
      this.#obtain().catch(() => {});
    }, Math.max(0, wait));
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}

/** 90_000 → "90 s", 7_200_000 → "2 h". */
function human(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 100) / 10} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 360_000) / 10} h`;
}

function messageOf(e: unknown): string {
  return oneLine(e instanceof Error ? e.message : String(e));
}
