/**
 * The dashboard: one page, its stylesheet and its script, kept as real files in
 * dashboard/ (so `deno fmt` and `deno lint` see them) and imported as text, which puts them
 * in the module graph: `deno compile` embeds them, so the page works from the binary.
 *
 * It draws with inline SVG: a chart of requests per second per backend over the last five
 * minutes, and a latency sparkline per server. Each pool has a card (its strategy, sticky
 * cookie and servers, with their controls), and the routing table is listed under them; a
 * config without pools (one pool named `default`) shows one "Servers" card and no routes.
 * It is live through /events (EventSource) and changes things through the JSON API
 * (`/api/pools/:pool/…`, so it works with any number of pools). With an admin token set, it asks for the token once
 * and keeps it in sessionStorage (gone when the tab closes).
 *
 * The Content-Security-Policy lets the page run only its own script and style from this
 * listener, so nothing else can run even if a server name tried to inject markup (names
 * are inserted with textContent, never as HTML).
 */
import DASHBOARD_HTML from "./dashboard/index.html" with { type: "text" };
import DASHBOARD_CSS from "./dashboard/style.css" with { type: "text" };
import DASHBOARD_JS from "./dashboard/app.js" with { type: "text" };

export { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS };

/** Allows exactly the page's own script and style, and connections back to this listener. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src data:",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
