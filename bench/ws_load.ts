/**
 * WebSocket load: `deno run -A bench/ws_load.ts URL CONNECTIONS SECONDS [idle]`. Opens the
 * connections, then each sends a 64-byte message and waits for its echo, again and again,
 * for SECONDS; prints one JSON line: messages per second and round-trip percentiles (ms).
 * With `idle`, it only opens the connections, prints `open`, and holds them until killed.
 */
const [url, connsArg, secondsArg, mode] = Deno.args;
const conns = Number(connsArg);
const sockets: WebSocket[] = [];
for (let i = 0; i < conns; i += 100) {
  const batch = Array.from({ length: Math.min(100, conns - i) }, () => {
    const ws = new WebSocket(url);
    return new Promise<WebSocket>((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error(`cannot open ${url}`));
    });
  });
  sockets.push(...await Promise.all(batch));
}
if (mode === "idle") {
  console.log(JSON.stringify({ open: sockets.length }));
  await new Promise(() => {});
}
const message = "x".repeat(64);
const rtts: number[] = [];
const end = performance.now() + Number(secondsArg) * 1000;
await Promise.all(sockets.map((ws) =>
  new Promise<void>((resolve) => {
    let sent = 0;
    const send = () => {
      if (performance.now() >= end) return resolve();
      sent = performance.now();
      ws.send(message);
    };
    ws.onmessage = () => {
      rtts.push(performance.now() - sent);
      send();
    };
    send();
  })
));
rtts.sort((a, b) => a - b);
const pct = (p: number) => rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * p))] ?? 0;
console.log(JSON.stringify({
  messagesPerSec: rtts.length / Number(secondsArg),
  p50: pct(0.5),
  p99: pct(0.99),
}));
for (const ws of sockets) ws.close();
Deno.exit(0);
