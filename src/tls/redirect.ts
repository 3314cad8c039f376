/**
 * `listen.redirectHttp`: a plaintext listener that sends every request to HTTPS with a 308
 * (method and body kept, RFC 9110 §15.4.9), and answers ACME http-01 challenges
 * (`/.well-known/acme-challenge/<token>`, RFC 8555 §8.3) from the tokens lb has out.
 */
import { targetOf } from "../proxy/admit.ts";

/** The key authorizations of the http-01 challenges lb is answering now, by token. */
export class ChallengeStore {
  #tokens = new Map<string, string>();

  set(token: string, keyAuthorization: string): void {
    this.#tokens.set(token, keyAuthorization);
  }

  get(token: string): string | undefined {
    return this.#tokens.get(token);
  }

  delete(token: string): void {
    this.#tokens.delete(token);
  }
}

const CHALLENGE = "/.well-known/acme-challenge/";
const HOST = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

/** The redirect listener's handler; `httpsPort` is the TLS listener's port. */
export function redirectHandler(
  httpsPort: () => number,
  challenges: ChallengeStore,
): (req: Request) => Response {
  return (req) => {
    const url = new URL(req.url);
    if (url.pathname.startsWith(CHALLENGE)) {
      const answer = challenges.get(url.pathname.slice(CHALLENGE.length));
      if (answer === undefined) return text(404, "no such challenge\n");
      return text(200, answer);
    }
    const host = req.headers.get("host") ?? "";
    const m = HOST.exec(host);
    if (!m) return text(400, "a Host header is required to redirect to https\n");
    const port = httpsPort();
    const target = `https://${m[1]}${port === 443 ? "" : `:${port}`}${targetOf(req.url)}`;
    return new Response(null, { status: 308, headers: { location: target } });
  };
}

function text(status: number, body: string): Response {
  return new Response(body, { status, headers: { "content-type": "text/plain" } });
}
