// A permessage-deflate echo check with node's `ws` client, for tests/deflate_clients.rs.
//
// Usage: WS_MODULE=/path/to/node_modules/ws node ws_deflate_echo.js ws://HOST:PORT/PATH
//
// Connects with ws's default client options (perMessageDeflate on: it offers
// `permessage-deflate; client_max_window_bits`), sends text of 10 B, 200 B and
// 100 KiB and a 64 KiB binary message one after the other, checks that each comes back
// identical, and prints `extensions=<the server's Sec-WebSocket-Extensions answer>`, `echoed=<count>`,
// `plain_bytes=<payload bytes received>` and `wire_bytes=<bytes read from the socket>`.
// Exits 0 when every echo matched and the close was clean, non-zero otherwise.
'use strict';

const WebSocket = require(process.env.WS_MODULE);

const url = process.argv[2];
const words = 'lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod ';
const text = (n) => words.repeat(Math.ceil(n / words.length)).slice(0, n);
const binary = Buffer.alloc(64 * 1024);
for (let i = 0; i < binary.length; i++) binary[i] = (i * 7) % 127;
const messages = [
  { data: '0123456789', binary: false },
  { data: text(200), binary: false },
  { data: text(100 * 1024), binary: false },
  { data: binary, binary: true },
];

let next = 0;
let plainBytes = 0;
let failed = false;

const timer = setTimeout(() => {
  console.error(`timeout after ${next} echoes`);
  process.exit(3);
}, 15000);

const ws = new WebSocket(url);
ws.on('upgrade', (response) => {
  console.log(`extensions=${response.headers['sec-websocket-extensions'] || ''}`);
});
ws.on('open', () => {
  ws.send(messages[0].data, { binary: messages[0].binary });
});
ws.on('message', (data, isBinary) => {
  const want = messages[next];
  const got = isBinary ? data : data.toString('utf8');
  const same = isBinary === want.binary && (isBinary ? Buffer.compare(got, want.data) === 0 : got === want.data);
  if (!same) {
    console.error(`echo ${next} differs: binary ${isBinary}, ${got.length} bytes`);
    failed = true;
  }
  plainBytes += data.length;
  next += 1;
  if (next < messages.length) {
    ws.send(messages[next].data, { binary: messages[next].binary });
  } else {
    console.log(`echoed=${next}`);
    console.log(`plain_bytes=${plainBytes}`);
    console.log(`wire_bytes=${ws._socket ? ws._socket.bytesRead : -1}`);
    ws.close(1000, 'done');
  }
});
ws.on('close', (code) => {
  clearTimeout(timer);
  console.log(`close=${code}`);
  process.exit(failed || code !== 1000 || next !== messages.length ? 1 : 0);
});
ws.on('error', (error) => {
  console.error(`error: ${error.message}`);
  process.exit(2);
});
