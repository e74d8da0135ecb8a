// sockjs-client (node) on one transport: open URL, send three messages (one with
// non-ASCII text), expect them echoed in order, close. Prints name=value lines:
// transport, echoed, close. Usage: SOCKJS_CLIENT=DIR node sockjs_client_echo.js URL TRANSPORT
'use strict';
const SockJS = require(process.env.SOCKJS_CLIENT);
const [url, transport] = process.argv.slice(2);
const messages = ['hello', 'sécond ✓', 'x'.repeat(5000)];
const received = [];
const sock = new SockJS(url, null, { transports: [transport], timeout: 10000 });
const timer = setTimeout(() => {
  console.log('error=timeout');
  process.exit(2);
}, 20000);
sock.onopen = () => {
  console.log(`transport=${sock.transport}`);
  for (const message of messages) sock.send(message);
};
sock.onmessage = (event) => {
  received.push(event.data);
  if (received.length === messages.length) {
    const same = received.every((data, i) => data === messages[i]);
    console.log(`echoed=${same ? received.length : 'wrong:' + JSON.stringify(received)}`);
    sock.close(1000);
  }
};
sock.onclose = (event) => {
  console.log(`close=${event.code}`);
  clearTimeout(timer);
  process.exit(received.length === messages.length && event.code === 1000 ? 0 : 1);
};
