/**
 * A client that leaves mid-upload while the answer is already on its way must not leave its
 * socket behind (SECURITY.md: "no socket left in CLOSE-WAIT"). Deno.serve (2.9.6) never closes
 * a connection whose streamed response ended while a read of the request body was pending, so
 * lb streams an answer only once the upload has ended (src/proxy/respond.ts).
 */
import assert from "node:assert/strict";
import { startLb } from "../../src/lb.ts";
import type { RequestRecord } from "../../src/log.ts";
import { connectTo, readFor, serveTcp, writeAll } from "../_raw.ts";
import { lbConfig, memoryLogger, startStack } from "../_stack.ts";

/** lb-side sockets of `port` in CLOSE-WAIT: the client closed, lb never did. */
async function closeWait(port: number): Promise<string[]> {
  const out = await new Deno.Command("ss", {
    args: ["-tnH", "state", "close-wait", `( sport = :${port} )`],
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.trim());
}

/** Polls until no lb socket of `port` is in CLOSE-WAIT; fails, listing them, at the deadline. */
async function assertNoCloseWait(port: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  let stuck = await closeWait(port);
  while (stuck.length > 0 && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 50));
    stuck = await closeWait(port);
  }
  assert.equal(
    stuck.length,
    0,
    `${stuck.length} sockets still in CLOSE-WAIT after ${ms}ms:\n${stuck.slice(0, 5).join("\n")}`,
  );
}

/** Declares 100000 body bytes, sends 100, reads what comes back, then leaves with a FIN. */
async function leaveMidUpload(url: string, path: string, i: number): Promise<void> {
  const conn = await connectTo(url);
  await writeAll(
    conn,
    `POST ${path} HTTP/1.1\r\nHost: lb\r\nContent-Length: 100000\r\n\r\n` + "x".repeat(100),
  );
  // Before the fix the echoed bytes arrive at once; since, nothing comes before the upload ends.
  await readFor(conn, { timeoutMs: 500, until: (t) => t.includes("xxxxxxxx") });
  if (i % 2 === 0) await conn.closeWrite().catch(() => {}); // a half-close first
  conn.close();
}

Deno.test("50 clients that close mid-upload while /echo answers leave no socket in CLOSE-WAIT", async () => {
  const s = await startStack(1);
  try {
    const port = Number(new URL(s.lb.url).port);
    const n = 50;
    await Promise.all(Array.from({ length: n }, (_, i) => leaveMidUpload(s.lb.url, "/echo", i)));
    await assertNoCloseWait(port, 5000);
    // Every request ended, as a client that went away, and nothing is counted in flight.
    const end = Date.now() + 3000;
    while (s.records.length < n && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    assert.equal(s.records.length, n);
    assert.deepEqual([...new Set(s.records.map((r) => r.status))], [499]);
  } finally {
    await s.close();
  }
});

Deno.test("a backend that dies mid-answer while the client is still uploading leaves no socket in CLOSE-WAIT", async () => {
  // Answers the head and a first chunk as soon as the request head arrives, then dies.
  const be = serveTcp(async (conn) => {
    await conn.read(new Uint8Array(64 * 1024));
    await writeAll(conn, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n");
    await new Promise((r) => setTimeout(r, 100));
  });
  const records: RequestRecord[] = [];
  const lb = startLb({
    config: lbConfig([be.url]),
    logger: memoryLogger(),
    stateFile: false,
    onRequest: (r) => records.push(r),
  });
  try {
    const port = Number(new URL(lb.url).port);
    await Promise.all(Array.from({ length: 10 }, (_, i) => leaveMidUpload(lb.url, "/", i)));
    await assertNoCloseWait(port, 5000);
  } finally {
    await lb.shutdown(2000);
    await be.close();
  }
});
