/**
 * Reads a V8 `.cpuprofile` (from `deno run --cpu-prof`) and sums where the time went:
 * self time per function and per file, and total (inclusive) time per function, so the
 * hot path's cost shows without opening DevTools.
 */

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileRow {
  name: string;
  ms: number;
  /** Share of the busy (non-idle) time, 0..1. */
  share: number;
}

export interface ProfileSummary {
  /** Sampled time, ms (idle included). */
  totalMs: number;
  idleMs: number;
  gcMs: number;
  selfByFunction: ProfileRow[];
  totalByFunction: ProfileRow[];
  selfByFile: ProfileRow[];
}

/** `file:///work/main/src/app.ts` → `src/app.ts`; npm and ext: paths shortened. */
export function shortUrl(url: string): string {
  if (!url) return "";
  const npm = /\/npm\/registry\.npmjs\.org\/([^/]+(?:\/[^/]+)?)\/[^/]+\/(.*)$/.exec(url);
  if (npm) return `npm:${npm[1]}/${npm[2]}`;
  const src = /\/((?:src|bench|backends)\/.*)$/.exec(url);
  if (src) return src[1];
  return url.replace(/^file:\/\//, "");
}

function frameName(f: CallFrame): string {
  const fn = f.functionName || "(anonymous)";
  if (!f.url) return fn;
  return `${fn} ${shortUrl(f.url)}:${f.lineNumber + 1}`;
}

/** Sums a profile. `top` rows per table. */
export function summarizeProfile(p: CpuProfile, top = 25): ProfileSummary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of p.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const selfUs = new Map<number, number>();
  if (p.samples && p.timeDeltas && p.samples.length === p.timeDeltas.length) {
    // timeDeltas[i] is the gap before sample i; charge it to that sample's node.
    for (let i = 0; i < p.samples.length; i++) {
      const d = Math.max(0, p.timeDeltas[i]);
      selfUs.set(p.samples[i], (selfUs.get(p.samples[i]) ?? 0) + d);
    }
  } else {
    const hits = p.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
    const per = (p.endTime - p.startTime) / hits;
    for (const n of p.nodes) if (n.hitCount) selfUs.set(n.id, n.hitCount * per);
  }

  const self = new Map<string, number>();
  const total = new Map<string, number>();
  const files = new Map<string, number>();
  let totalUs = 0;
  let idleUs = 0;
  let gcUs = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    if (!node) continue;
    totalUs += us;
    const fn = node.callFrame.functionName;
    if (fn === "(idle)") {
      idleUs += us;
      continue;
    }
    if (fn === "(garbage collector)") gcUs += us;
    const name = frameName(node.callFrame);
    self.set(name, (self.get(name) ?? 0) + us);
    const file = node.callFrame.url ? shortUrl(node.callFrame.url) : fn;
    files.set(file, (files.get(file) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets this sample once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = byId.get(cur)!;
      if (n.callFrame.functionName === "(root)") break;
      const k = frameName(n.callFrame);
      if (seen.has(k)) continue;
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + us);
    }
  }
  const busy = Math.max(1, totalUs - idleUs);
  const rows = (m: Map<string, number>) =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]) => ({
      name,
      ms: us / 1000,
      share: us / busy,
    }));
  return {
    totalMs: totalUs / 1000,
    idleMs: idleUs / 1000,
    gcMs: gcUs / 1000,
    selfByFunction: rows(self),
    totalByFunction: rows(total),
    selfByFile: rows(files),
  };
}

/** The summary as text tables. */
export function formatProfile(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1).padStart(5)}%`;
  const table = (title: string, rows: ProfileRow[]) =>
    `${title}\n` +
    rows.map((r) => `  ${pct(r.share)} ${r.ms.toFixed(0).padStart(7)} ms  ${r.name}`).join("\n");
  const busy = s.totalMs - s.idleMs;
  return [
    `sampled ${s.totalMs.toFixed(0)} ms: busy ${busy.toFixed(0)} ms, idle ${
      s.idleMs.toFixed(0)
    } ms, GC ${s.gcMs.toFixed(0)} ms (${((s.gcMs / Math.max(1, busy)) * 100).toFixed(1)}% of busy)`,
    table("self time by function (share of busy time)", s.selfByFunction),
    table("total time by function (callees included)", s.totalByFunction),
    table("self time by file", s.selfByFile),
  ].join("\n\n");
}
