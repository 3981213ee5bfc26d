'use strict';
// Node `ws` peer for the performance comparison, with the native helpers (bufferutil,
// utf-8-validate) that ws loads by itself when they are installed. Written the way ws's
// README writes a server: an http.Server, one WebSocketServer in noServer mode routed
// from the 'upgrade' event, default options (no permessage-deflate).
//
//   /echo                           every text or binary message is sent back
//   /broadcast?conversation_id=N    every text message goes to every *other* client of N
//                                   (/ws?conversation_id=N, its name before chatgroup's
//                                   chat socket took /ws, works too)
//
// Usage: node server.js 127.0.0.1:PORT

const http = require('http');
const { WebSocketServer } = require('ws');

const [host, port] = (process.argv[2] || '127.0.0.1:9003').split(':');

// Fail at start, not under load, if the native helpers did not install.
require('bufferutil');
require('utf-8-validate');

const rooms = new Map(); // conversation id -> Set of sockets

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  let room = null;
  if (url.pathname === '/broadcast' || url.pathname === '/ws') {
    room = url.searchParams.get('conversation_id');
    if (room === null || !/^\d+$/.test(room)) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
  } else if (url.pathname !== '/echo') {
    socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    if (room === null) {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      return;
    }
    let members = rooms.get(room);
    if (!members) {
      members = new Set();
      rooms.set(room, members);
    }
    members.add(ws);
    ws.on('message', (data, isBinary) => {
      if (isBinary) return;
      for (const member of members) {
        if (member !== ws && member.readyState === 1) member.send(data, { binary: false });
      }
    });
    ws.on('close', () => {
      members.delete(ws);
      if (members.size === 0 && rooms.get(room) === members) rooms.delete(room);
    });
  });
});

server.listen(Number(port), host, () => {
  console.log(`node-ws-peer listening on ${host}:${server.address().port}`);
});
