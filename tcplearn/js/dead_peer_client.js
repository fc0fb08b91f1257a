// tcplearn: a Node.js client whose peer goes silent (used by tcplearn.deadpeer).
//
//   node dead_peer_client.js '{"host":"127.0.0.1","port":8080,"mode":"idle","timeout_ms":1000,"duration_s":2}'
//   node dead_peer_client.js '{"host":"127.0.0.1","port":8080,"mode":"keepalive","initial_delay_ms":1000,"duration_s":15}'
//
// Prints one JSON object per line as things happen, so that Python can look at this
// process's socket while it runs:
//   {"event":"connected","t":0,"local_port":N}      right after connect
//   {"event":"configured","t":...}                  after setTimeout / setKeepAlive
//   {"event":"timeout"|"error"|"close",...}         as Node emits them
//   {"done":true,"node":"v..","events":[...]}       last line
// 'timeout' only notifies: this client never closes on it, so the output shows what Node
// itself does.  The socket is destroyed when duration_s has passed (or after 'close').
'use strict';
const net = require('net');
const args = JSON.parse(process.argv[2] || '{}');

const events = [];
let t0 = null;
const now = () => (t0 === null ? 0 : Number(process.hrtime.bigint() - t0) / 1e9);
const emit = (event, extra = {}) => {
  const e = { event, t: now(), ...extra };
  events.push(e);
  process.stdout.write(JSON.stringify(e) + '\n');
};
let finished = false;
const finish = () => {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify({ done: true, node: process.version, events }) + '\n');
  process.exit(0);
};

const sock = net.connect({ host: args.host, port: args.port }, () => {
  t0 = process.hrtime.bigint();
  emit('connected', { local_port: sock.localPort });
  if (args.mode === 'idle') {
    sock.setTimeout(args.timeout_ms);
  } else {
    sock.setKeepAlive(true, args.initial_delay_ms);
  }
  emit('configured');
  setTimeout(() => { sock.destroy(); setTimeout(finish, 100); }, args.duration_s * 1000);
});
sock.on('timeout', () => emit('timeout', { readyState: sock.readyState, destroyed: sock.destroyed }));
sock.on('error', (err) => emit('error', { code: err.code, message: err.message }));
sock.on('close', (hadError) => { emit('close', { hadError }); setTimeout(finish, 50); });
