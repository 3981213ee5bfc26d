// Interop: a Node `ws` echo server with permessage-deflate, for our codec's client role.
//
// Usage: node deflate_echo_server.mjs
// Listens on a free port of 127.0.0.1, prints "listening PORT", and echoes every message
// (text as text, binary as binary), compressed whatever its size (threshold 0) with the
// parameters the client's offer and ws's defaults agree on (context takeover unless the
// client asks otherwise). crates/rfc6455/tests/interop_deflate_servers.rs starts it and
// kills it when done; it also stops by itself after 60 seconds.

import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { WebSocketServer } = require("ws");

const wss = new WebSocketServer({
  host: "127.0.0.1",
  port: 0,
  maxPayload: 0,
  perMessageDeflate: { threshold: 0 },
});
wss.on("listening", () => console.log(`listening ${wss.address().port}`));
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
setTimeout(() => process.exit(0), 60000).unref();
