/**
 * `listen.redirectHttp`: a plaintext listener that sends every request to HTTPS with a 308
 * (method and body kept, RFC 9110 §15.4.9), and answers ACME http-01 challenges
 * (`/.well-known/acme-challenge/<token>`, RFC 8555 §8.3) from the tokens lb has out.
 */
import { targetOf } from "../proxy/admit.ts";
import { challengeResponse, type ChallengeStore } from "./acme.ts";

const HOST = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/;

/** The redirect listener's handler; `httpsPort` is the TLS listener's port. */
export function redirectHandler(
  httpsPort: () => number,
  challenges: ChallengeStore,
): (req: Request) => Response {
  return (req) => {
    const challenge = challengeResponse(challenges, new URL(req.url).pathname);
    if (challenge) return challenge;
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
