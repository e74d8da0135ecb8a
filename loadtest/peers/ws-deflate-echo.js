// Echo server on node's `ws` with permessage-deflate, for loadtest/deflate.sh.
// PORT (default 9002); WS_DIR: a folder with node_modules/ws (default: this folder).
// WS_DEFLATE_MODE: context-takeover (default) or no-context-takeover.
// perMessageDeflate: { threshold: 0 } so every message is compressed (ws's default
// threshold of 1024 B would leave 125 B messages uncompressed); other options are ws's
// defaults (zlib level Z_DEFAULT_COMPRESSION, 15-bit windows, concurrencyLimit 10).
const path = require('path');
const dir = process.env.WS_DIR || __dirname;
const { WebSocketServer } = require(path.join(dir, 'node_modules', 'ws'));
const nct = process.env.WS_DEFLATE_MODE === 'no-context-takeover';
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: Number(process.env.PORT || 9002),
  maxPayload: 100 * 1024 * 1024,
  perMessageDeflate: {
    threshold: 0,
    serverNoContextTakeover: nct,
    clientNoContextTakeover: nct,
  },
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
