/** The benchmark's WebSocket backend: echoes every message; prints its port. */
Deno.serve(
  { hostname: "127.0.0.1", port: 0, onListen: (a) => console.log(`listening ${a.port}`) },
  (req) => {
    if (req.headers.get("upgrade") !== "websocket") return new Response("ws echo\n");
    const { socket, response } = Deno.upgradeWebSocket(req);
    socket.onmessage = (e) => socket.send(e.data);
    return response;
  },
);
