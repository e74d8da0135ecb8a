// uWebSockets.js echo peer for loadtest/compare.sh. It loads the package's native addon
// directly, so it can never fall back to the package's pure-JS shim.
const path = require('path');
const addon = path.join(__dirname, 'node_modules/@trufflesuite/uws-js-unofficial/binaries',
  `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
const uws = require(addon);
module.exports.check = () => { if (typeof uws.App !== 'function') throw new Error('no native uWS'); };
if (require.main === module) {
  const port = parseInt(process.env.PORT || '9003', 10);
  uws.App().ws('/*', {
    compression: 0, idleTimeout: 0,
    maxPayloadLength: 64 * 1024 * 1024, maxBackpressure: 64 * 1024 * 1024,
    message: (ws, message, isBinary) => { ws.send(message, isBinary); },
  }).listen('127.0.0.1', port, (token) => {
    if (!token) { console.error(`uws.js: listen on ${port} failed`); process.exit(1); }
    console.error(`uws.js listening on 127.0.0.1:${port}`);
  });
}
