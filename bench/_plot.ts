/**
 * The benchmark's picture: req/s and p99 of every plain-HTTP target side by side, as an SVG
 * with no script and no external resource (the README shows docs/bench.svg, a copy of a
 * run's bench/results/bench.svg). nginx and HAProxy in grey, the lean Deno proxies in light
 * blue, lb in blue.
 */
import type { TargetResult } from "./_report.ts";

const ROW = 22;
const LABEL = 230;
const PANEL = 300;
const GAP = 70;
const TOP = 56;

function colour(id: string): string {
  if (id === "nginx" || id === "haproxy") return "#9ca3af";
  if (id.startsWith("lean")) return "#93c5fd";
  if (id === "direct") return "#d1d5db";
  return "#2563eb";
}

function escape(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A horizontal bar with its value written after it. */
function bar(x: number, y: number, w: number, fill: string, text: string): string {
  return `<rect x="${x}" y="${y + 4}" width="${Math.max(1, w).toFixed(1)}" height="${ROW - 8}" ` +
    `fill="${fill}"/><text x="${(x + w + 4).toFixed(1)}" y="${y + ROW - 7}">${escape(text)}</text>`;
}

/** The SVG for the measured plain-HTTP targets (TLS rows and skipped targets left out). */
export function plotSvg(results: TargetResult[], machine: string): string {
  const rows = results.filter((r) => !r.kind && r.median && !r.skipped);
  const maxRps = Math.max(1, ...rows.map((r) => r.median!.requestsPerSec));
  const maxP99 = Math.max(0.001, ...rows.map((r) => r.median!.p99));
  const width = LABEL + 2 * PANEL + GAP + 60;
  const foot = wrap(machine, 150);
  const height = TOP + rows.length * ROW + 24 + 16 * foot.length;
  const x2 = LABEL + PANEL + GAP;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">lb beside nginx, HAProxy and lean ` +
    `Deno proxies (wrk -t1 -c50, medians)</text>`,
    `<text x="${LABEL}" y="${
      TOP - 10
    }" font-weight="bold">requests per second (higher is better)</text>`,
    `<text x="${x2}" y="${TOP - 10}" font-weight="bold">p99 latency, ms (lower is better)</text>`,
  ];
  rows.forEach((r, i) => {
    const y = TOP + i * ROW;
    const m = r.median!;
    const fill = colour(r.id);
    out.push(
      `<text x="${LABEL - 8}" y="${y + ROW - 7}" text-anchor="end">${escape(r.label)}</text>`,
    );
    out.push(
      bar(
        LABEL,
        y,
        (m.requestsPerSec / maxRps) * PANEL,
        fill,
        Math.round(m.requestsPerSec).toLocaleString("en-US"),
      ),
    );
    out.push(bar(x2, y, (m.p99 / maxP99) * PANEL, fill, m.p99.toFixed(2)));
  });
  foot.forEach((line, i) => {
    const y = TOP + rows.length * ROW + 24 + 16 * i;
    out.push(`<text x="10" y="${y}" fill="#6b7280">${escape(line)}</text>`);
  });
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** `text` in lines of at most about `width` characters, broken after "; " or ", ". */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const part of text.split(/(?<=[;,] )/)) {
    if (line && line.length + part.length > width) {
      lines.push(line.trimEnd());
      line = "";
    }
    line += part;
  }
  if (line) lines.push(line.trimEnd());
  return lines;
}
