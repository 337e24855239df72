// Opens N keep-alive connections to a server, sends one request on each
// (all at once), and holds them open once every answer is in, so that
// bench/run.sh can read the server's resident memory.
//
//   node hold.js URL N MAX_SECONDS POST|OPTIONS [header:value ...]
//
// The request is a POST with an empty body (the token endpoint; the
// headers given go with it) or a CORS preflight for it. Once a socket has
// its answer it sends a preflight every 2 s, as a browser's widget would,
// so that servers with a short keep-alive timeout (Node's is 5 s) keep it
// open. Prints `HOLD open=N ok=N failed=N` half a second after the last
// answer, then holds until killed or MAX_SECONDS pass.
'use strict';

const net = require('node:net');

const [url, countText, maxText, method, ...headerArgs] =
  process.argv.slice(2);
const count = Number(countText);
const maxSeconds = Number(maxText);
const { hostname, port, pathname } = new URL(url);

const POST = [
  `POST ${pathname} HTTP/1.1`,
  `Host: ${hostname}:${port}`,
  'Content-Length: 0',
  ...headerArgs,
  '',
  '',
].join('\r\n');

const PREFLIGHT = [
  `OPTIONS ${pathname} HTTP/1.1`,
  `Host: ${hostname}:${port}`,
  'Origin: https://authkit.picaos.com',
  'Access-Control-Request-Method: POST',
  'Access-Control-Request-Headers: x-user-id',
  '',
  '',
].join('\r\n');

const PING_MS = 2000;

let open = 0;
let ok = 0;
let failed = 0;
let reportTimer = null;

// Reports once, half a second after the last answer.
function answered() {
  if (ok + failed === count && reportTimer === null) {
    reportTimer = setTimeout(() => {
      console.log(`HOLD open=${open} ok=${ok} failed=${failed}`);
    }, 500);
  }
}

// Counts one answer per socket from its status line; the rest of the
// body is read and dropped so the server is never blocked on writing.
function connect() {
  const socket = net.connect({ host: hostname, port: Number(port) });
  let status = null;
  let first = '';
  let connected = false;
  socket.on('connect', () => {
    connected = true;
    open += 1;
    socket.write(method === 'OPTIONS' ? PREFLIGHT : POST);
  });
  socket.on('data', (chunk) => {
    if (status !== null) {
      return;
    }
    first += chunk.toString('latin1', 0, 64);
    const match = /^HTTP\/1\.1 (\d{3})/.exec(first);
    if (match) {
      status = Number(match[1]);
      if (status >= 200 && status < 300) {
        ok += 1;
      } else {
        failed += 1;
      }
      const ping = setInterval(() => socket.write(PREFLIGHT), PING_MS);
      socket.on('close', () => clearInterval(ping));
      answered();
    }
  });
  socket.on('error', () => {});
  socket.on('close', () => {
    open -= connected ? 1 : 0;
    if (status === null) {
      status = 0;
      failed += 1;
      answered();
    }
  });
}

for (let i = 0; i < count; i += 1) {
  connect();
}
setTimeout(() => process.exit(0), maxSeconds * 1000);
