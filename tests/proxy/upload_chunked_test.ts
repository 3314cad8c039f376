/**
 * Chunked uploads: lb reads a client's chunked body in reads that take a whole client chunk.
 *
 * Deno 2.9's HTTP/1 server answers each read of a chunked request body with the data of at
 * most one chunk, and before that moves what the socket holds (up to the largest read ever
 * asked on the connection) into a buffer of its own, which every read then shifts down. A
 * read that takes less than it pulls in makes that buffer grow whenever lb is behind the
 * client, and every read copies all of it: 256 MiB sent by fetch in 64 KiB chunks took 23-33 s
 * through lb instead of 0.5 s, because a 64 KiB read has no room for a 64 KiB chunk's framing:
 * each chunk took two reads (65527 bytes, then 9), each pulling in up to 64 KiB.
 *
 * Wall-clock time is no test, but how lb's reads cut the client's chunks is deterministic when
 * each chunk is all there before lb reads it: a read never spans two client chunks, and lb
 * forwards each read as one chunk of its own, so the backend sees lb's reads. The client here
 * writes a chunk only once the backend has every earlier byte (lb is waiting on its next
 * read), in one write that the kernel queues whole before lb's event loop runs again.
 *
 * Only the first test fails without the fix: the other sizes were read whole before too (a
 * read larger than the chunk), and the harm there (the read pulling in more than it takes,
 * when the client is ahead) does not show in how chunks are cut. It guards the sizing instead.
 */
import assert from "node:assert/strict";
import { latin1 } from "../../src/proxy/http1.ts";
import { startLb } from "../../src/lb.ts";
import { connectTo, hasFullResponse, parseHead, readFor, serveTcp, writeAll } from "../_raw.ts";
import { lbConfig, memoryLogger } from "../_stack.ts";

/** Resolves `p`, or fails the test after `ms` (a stuck upload, not a slow one: generous). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) =>
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)
      ),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A raw backend that parses the chunked body lb sends as it arrives: the size of every chunk
 * lb wrote, and a wait for the body to reach a number of bytes. Answers 200 "ok" at its end.
 */
function startChunkBackend() {
  const sizes: number[] = [];
  const heads: string[] = [];
  let received = 0;
  let waiters: { bytes: number; resolve: () => void }[] = [];
  const server = serveTcp(async (conn) => {
    let buf = new Uint8Array(0);
    const more = async () => {
      const b = new Uint8Array(64 * 1024);
      const n = await conn.read(b);
      if (n === null) throw new Error("lb closed the connection");
      const joined = new Uint8Array(buf.byteLength + n);
      joined.set(buf);
      joined.set(b.subarray(0, n), buf.byteLength);
      buf = joined;
    };
    const line = async () => {
      let i;
      while ((i = buf.indexOf(10)) === -1) await more();
      const text = latin1(buf.subarray(0, i - 1));
      buf = buf.subarray(i + 1);
      return text;
    };
    let head = "";
    for (let l = await line(); l !== ""; l = await line()) head += l + "\n";
    heads.push(head);
    for (let first = true;; first = false) {
      // lb sends a chunk's closing CRLF with the next size line: a chunk counts once its data
      // is here, without waiting for the next one.
      if (!first) assert.equal(await line(), "", "chunk data longer than its size");
      const size = parseInt(await line(), 16);
      if (!(size > 0)) break; // the last chunk (no trailers from lb)
      while (buf.byteLength < size) await more();
      buf = buf.subarray(size);
      sizes.push(size);
      received += size;
      waiters = waiters.filter((w) => received >= w.bytes ? (w.resolve(), false) : true);
    }
    await conn.write(
      new TextEncoder().encode(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
      ),
    );
  });
  return {
    url: server.url,
    sizes,
    heads,
    /** Resolves once lb has forwarded `bytes` body bytes. */
    received(bytes: number): Promise<void> {
      if (received >= bytes) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ bytes, resolve }));
    },
    close: () => server.close(),
  };
}

/**
 * Uploads `count` chunks of `size` bytes through lb, each written once lb has forwarded all
 * the earlier ones; returns the chunk sizes lb sent the backend.
 */
async function forwardedChunks(size: number, count: number): Promise<number[]> {
  const backend = startChunkBackend();
  const lb = startLb({
    config: lbConfig([backend.url], "health: { enabled: false }"),
    logger: memoryLogger(),
  });
  const conn = await connectTo(lb.url);
  try {
    await writeAll(
      conn,
      "POST /upload HTTP/1.1\r\nhost: lb.test\r\ntransfer-encoding: chunked\r\n\r\n",
    );
    const line = new TextEncoder().encode(`${size.toString(16)}\r\n`);
    const chunk = new Uint8Array(line.byteLength + size + 2).fill(97); // "a"
    chunk.set(line);
    chunk.set([13, 10], line.byteLength + size);
    for (let k = 0; k < count; k++) {
      await within(backend.received(k * size), 10_000, `lb to forward ${k} chunks`);
      assert.ok(await writeAll(conn, chunk), "lb closed the client connection");
    }
    await within(backend.received(count * size), 10_000, "the last chunk");
    await writeAll(conn, "0\r\n\r\n");
    const res = await readFor(conn, { until: hasFullResponse, timeoutMs: 10_000 });
    const head = parseHead(res.text);
    assert.equal(head?.status, 200, res.text.slice(0, 300));
    assert.equal(head?.rest, "ok");
    assert.equal(backend.heads.length, 1);
    assert.match(backend.heads[0], /^transfer-encoding: chunked$/im);
    return backend.sizes;
  } finally {
    conn.close();
    await lb.shutdown(2000);
    await backend.close();
  }
}

/**
 * Groups lb's chunks by the client chunk they came from (a read never spans two) and checks
 * that every client chunk after the first went out in one piece: the first one may take a few
 * reads while lb learns the client's chunk size.
 */
function assertWholeAfterFirst(forwarded: number[], size: number, count: number): void {
  assert.equal(forwarded.reduce((a, b) => a + b, 0), size * count, "bytes lost or added");
  const perClientChunk: number[][] = [];
  let current: number[] = [];
  let filled = 0;
  for (const n of forwarded) {
    current.push(n);
    filled += n;
    assert.ok(filled <= size, `a read spans two client chunks: ${JSON.stringify(forwarded)}`);
    if (filled === size) {
      perClientChunk.push(current);
      current = [];
      filled = 0;
    }
  }
  assert.equal(perClientChunk.length, count);
  assert.ok(perClientChunk[0].length <= 8, `first chunk in ${perClientChunk[0].length} reads`);
  assert.deepEqual(
    perClientChunk.slice(1).filter((pieces) => pieces.length > 1),
    [],
    `client chunks of ${size} bytes read in pieces (a read that takes less than Deno pulls in ` +
      `makes Deno's buffer grow, and every read copy it): ${JSON.stringify(forwarded)}`,
  );
}

Deno.test("a 64 KiB chunk from the client is read in one piece, not cut by lb's read size", async () => {
  // fetch (Deno's and Node's) and Node streams send 64 KiB chunks.
  const forwarded = await forwardedChunks(64 * 1024, 6);
  assertWholeAfterFirst(forwarded, 64 * 1024, 6);
  assert.ok(forwarded.length <= 6 + 7, `${forwarded.length} reads for 6 chunks`);
});

Deno.test("chunks of other sizes are read whole too: reads follow the client's chunk size", async () => {
  for (const size of [4096, 10_000, 16 * 1024, 40_000, 65_524]) {
    assertWholeAfterFirst(await forwardedChunks(size, 5), size, 5);
  }
});
