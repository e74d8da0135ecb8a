// uWebSockets.js one-topic broadcast peer for loadtest/fanout.sh (uWS's broadcast_test
// method): every connection subscribes to "broadcast" on open, and every message received
// is published to it with app.publish, which reaches every subscriber, the sender included
// (N clients sending one message each = N^2 deliveries). Run like uws-echo.js: copied next
// to node_modules/@trufflesuite/uws-js-unofficial, PORT from the environment. It loads the
// package's native addon directly, so it can never fall back to the pure-JS shim.
const path = require('path');
const addon = path.join(__dirname, 'node_modules/@trufflesuite/uws-js-unofficial/binaries',
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
const uws = require(addon);
module.exports.check = () => { if (typeof uws.App !== 'function') throw new Error('no native uWS'); };
if (require.main === module) {
  const port = parseInt(process.env.PORT || '9004', 10);
  const app = uws.App();
  app.ws('/*', {
    compression: 0, idleTimeout: 0,
    maxPayloadLength: 16 * 1024 * 1024, maxBackpressure: 64 * 1024 * 1024,
    open: (ws) => { ws.subscribe('broadcast'); },
    message: (ws, message, isBinary) => { app.publish('broadcast', message, isBinary); },
  }).listen('127.0.0.1', port, (token) => {
    if (!token) { console.error(`uws.js: listen on ${port} failed`); process.exit(1); }
    console.error(`uws.js broadcast listening on 127.0.0.1:${port}`);
  });
}
