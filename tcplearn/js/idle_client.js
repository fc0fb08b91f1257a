// tcplearn: a Node.js client that reports socket.setTimeout's events as JSON.
//
//   node idle_client.js '{"host":"127.0.0.1","port":8080,"timeout_ms":500,"duration_s":3,
//                         "writes":[[1.0,"hello"]],"destroy_at_s":null}'
//   node idle_client.js '{"validate": <value>}'   -> {"code": "ERR_...", "message": "..."} or {"ok": true}
//
// Events: {"t": seconds since connect, "event": "data"|"timeout"|"end"|"close"|"write", "bytes": n}.
// setTimeout only emits 'timeout'; this client never closes on it, so the timeline shows what
// Node itself does: the socket stays open until duration_s (or destroy_at_s) ends it.
'use strict';
const net = require('net');
const args = JSON.parse(process.argv[2] || '{}');

if (Object.prototype.hasOwnProperty.call(args, 'validate')) {
  let value = args.validate;
  if (value && typeof value === 'object' && 'special' in value) {
    value = { NaN: NaN, Infinity: Infinity, '-Infinity': -Infinity, undefined: undefined }[value.special];
  }
  const sock = new net.Socket();
  try {
    sock.setTimeout(value);
    process.stdout.write(JSON.stringify({ ok: true }) + '\n');
  } catch (err) {
    process.stdout.write(JSON.stringify({ code: err.code, name: err.name, message: err.message }) + '\n');
  }
  sock.destroy();
  process.exit(0);
}

// Hold mode: connect, setTimeout(timeout_ms), report pid and ports, then stay connected
// until stdin closes (or hold_s passes), so another process can inspect this very socket.
//   node idle_client.js '{"hold":true,"host":"127.0.0.1","port":8080,"timeout_ms":1000,"hold_s":20}'
if (args.hold) {
  let timeouts = 0;
  const sock = net.connect({ host: args.host, port: args.port }, () => {
    sock.setTimeout(args.timeout_ms);
    process.stdout.write(JSON.stringify({ ready: true, pid: process.pid, node: process.version,
      local_port: sock.localPort, remote_port: sock.remotePort }) + '\n');
  });
  sock.on('timeout', () => { timeouts += 1; });
  sock.on('error', () => {});
  const done = () => {
    sock.destroy();
    process.stdout.write(JSON.stringify({ done: true, timeouts }) + '\n');
    process.exit(0);
  };
  process.stdin.on('end', done);
  process.stdin.on('close', done);
  process.stdin.resume();
  setTimeout(done, (args.hold_s ?? 20) * 1000);
  return;
}

const events = [];
let t0 = null;
const now = () => (t0 === null ? 0 : Number(process.hrtime.bigint() - t0) / 1e9);
const record = (event, bytes = 0) => events.push({ t: now(), event, bytes });
let finished = false;
const finish = () => {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify({ node: process.version, events }) + '\n');
  process.exit(0);
};

const sock = net.connect({ host: args.host, port: args.port }, () => {
  t0 = process.hrtime.bigint();
  sock.setTimeout(args.timeout_ms);
  for (const [at, text] of args.writes || []) {
    setTimeout(() => { if (!sock.destroyed) { sock.write(text); record('write', Buffer.byteLength(text)); } },
      at * 1000);
  }
  setTimeout(() => sock.destroy(), (args.destroy_at_s ?? args.duration_s) * 1000);
});
sock.on('data', (chunk) => record('data', chunk.length));
sock.on('timeout', () => record('timeout'));
sock.on('end', () => record('end'));
sock.on('error', (err) => record('error:' + err.code));
sock.on('close', () => { record('close'); setTimeout(finish, (args.linger_s ?? 0.3) * 1000); });
