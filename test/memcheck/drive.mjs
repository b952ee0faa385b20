// The valgrind workload (`npm run test:valgrind`, scripts/memcheck.sh valgrind): every entry point of the addon,
// successes and refusals, through the built library (dist/), in a namespace of its own, a few rounds so that a
// leak per call shows as many blocks. Small on purpose: node runs ~30 times slower under memcheck.
import { execFileSync } from 'node:child_process';

import { ConntrackClient, IpsetClient, PortwallError, accept, counter, inSet, openNft, rule, subscribeNftEvents, F } from '../../dist/src/index.js';
import { binding } from '../../dist/src/native.js';

const ROUNDS = Number(process.env.PORTWALL_MEMCHECK_ROUNDS ?? 3);
const ns = `pw-memcheck-${process.pid}`;
const ip = (...args) => execFileSync('ip', args, { stdio: 'ignore' });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the error code a call rejects with (and fails when it does not reject). */
async function refused(p) {
  try {
    await p;
  } catch (e) {
    return e instanceof PortwallError ? e.code : String(e);
  }
  throw new Error('expected a refusal');
}

const table = { kind: 'table', family: 'inet', name: 'mc' };
const chain = { kind: 'chain', family: 'inet', table: 'mc', name: 'fwd', hook: 'forward', priority: 0, type: 'filter', policy: 'drop' };
const set = { kind: 'set', family: 'inet', table: 'mc', name: 'allow', key: ['ipv4_addr', 'inet_proto'] };
const elements = (n) => ({
  kind: 'elements', family: 'inet', table: 'mc', set: 'allow',
  elements: Array.from({ length: n }, (_, i) => ({ key: [`198.51.100.${i}`, 'tcp'], comment: `member ${i}` })),
});
const allowRule = { kind: 'rule', family: 'inet', table: 'mc', chain: 'fwd', comment: 'allowed by set',
  exprs: rule('inet', inSet([F.ip.saddr, F.meta.l4proto], set), counter(), accept()) };
const flows = (n, zone) => Array.from({ length: n }, (_, i) => ({
  zone, protocol: i % 2 ? 'udp' : 'tcp', src: `198.51.100.${i % 250}`, dst: '203.0.113.1', sport: 1024 + i, dport: 53, timeout: 300 }));

async function round(nft, perCall, ct, sets) {
  // nftables: commit, list, genid, a stale genid, a kernel refusal, encode + send, delete.
  const { genid } = await nft.transaction().add(table).add(chain).add(set).add(elements(50)).add(allowRule).commit();
  const { objects } = await perCall.list({ table: 'mc' });
  if (objects.length < 4) throw new Error(`listed ${objects.length} objects`);
  // The cheap look (set definitions, the elements of named sets only): on the held socket and per call.
  for (const client of [nft, perCall]) {
    for (const namedSetsOnly of [false, true]) {
      const look = await client.list({ table: 'mc', elementsOf: ['allow', 'absent'], namedSetsOnly });
      if (look.objects.some((o) => o.kind === 'chain' || o.kind === 'rule') || !look.objects.some((o) => o.kind === 'elements')) {
        throw new Error('the look listed chains or rules, or no elements');
      }
    }
  }
  await nft.genid();
  if (await refused(nft.transaction().add(elements(1)).commit({ genid: genid - 1 })) !== 'ERR_CONFLICT') throw new Error('no conflict');
  if (await refused(perCall.transaction().delete({ kind: 'table', family: 'inet', name: 'absent' }).commit()) !== 'ERR_KERNEL') {
    throw new Error('no kernel refusal');
  }
  await binding().nftSendEncoded(ns, await binding().nftEncode(nft.transaction().delete(table).encode()));

  // ipset: create, add, test, list, replace (swap), delete members, refusals, destroy.
  await sets.create('mc-v4', { type: 'hash:net', comment: true, counters: true });
  await sets.add('mc-v4', ['192.0.2.10', '198.51.100.0/24', '203.0.113.0/25']);
  await sets.test('mc-v4', ['192.0.2.10', '192.0.2.11']);
  await sets.list('mc-v4');
  await sets.replace('mc-v4', ['192.0.2.11']);
  await sets.del('mc-v4', ['192.0.2.11']);
  if (await refused(sets.add('mc-none', ['192.0.2.1'])) !== 'ERR_SET_NOT_FOUND') throw new Error('no ipset refusal');
  await sets.destroy('mc-v4');

  // conntrack: create, list, count, delete by identity and by filter, flush a zone, a refusal.
  await ct.create(flows(100, 70));
  const listed = await ct.list({ zone: 70, protocol: 'udp' });
  await ct.count();
  await ct.count({ zone: 70 });
  await ct.deleteEntries(listed.slice(0, 10));
  await ct.delete({ zone: 70, protocol: 'tcp', src: '198.51.100.0/26' });
  await ct.flushZone(70);
  if (await refused(ct.create([...flows(1, 71), ...flows(1, 71)])) === undefined) throw new Error('no conntrack refusal');
  await ct.flushZone(71);
}

ip('netns', 'add', ns);
try {
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const txs = [];
  const nftSub = await subscribeNftEvents(ns, (t) => txs.push(...t));
  const ctEvents = [];
  const ct = new ConntrackClient({ netns: ns, persistent: true });
  const ctSub = await ct.subscribe((e) => ctEvents.push(...e));
  const nft = openNft({ netns: ns, persistent: true });
  const perCall = openNft({ netns: ns });
  const sets = new IpsetClient({ netns: ns });
  const heldSets = new IpsetClient({ netns: ns, persistent: true });
  // NFLOG: a log rule on the namespace's output, a group bound twice (the second refused: EBUSY).
  let logged = 0;
  const logSub = await binding().nflogSubscribe(ns, 7, 128, (_e, packets) => void (logged += packets.length));
  // nftables tracing: the output chain marks ICMP with meta nftrace; every step of it is reported.
  let traced = 0;
  const traceSub = await binding().nftTraceSubscribe(ns, (_e, events) => void (traced += events.length));
  const busy = await binding().nflogSubscribe(ns, 7, 128, () => {}).then(() => 'bound twice', (e) => e.kind);
  if (busy !== 'netlink') throw new Error(`a second reader of one NFLOG group: ${busy}`);
  const logTx = nft.transaction();
  logTx.add({ kind: 'table', family: 'inet', name: 'mclog' });
  logTx.add({ kind: 'chain', family: 'inet', table: 'mclog', name: 'out', hook: 'output', priority: 0, type: 'filter', policy: 'accept' });
  logTx.add({ kind: 'rule', family: 'inet', table: 'mclog', chain: 'out', exprs: rule('inet', [{ kind: 'log', group: 7, prefix: 'mc' }]) });
  logTx.add({ kind: 'rule', family: 'inet', table: 'mclog', chain: 'out', exprs: [
    ...rule('inet', [{ kind: 'match', left: F.meta.l4proto, op: 'eq', value: 1 }]),
    { type: 'immediate', dreg: 1, data: Uint8Array.of(1) }, { type: 'meta', key: 'nftrace', sreg: 1 },
  ] });
  await logTx.commit();
  for (let i = 0; i < ROUNDS; i++) await round(nft, perCall, i % 2 ? new ConntrackClient({ netns: ns }) : ct, i % 2 ? sets : heldSets);
  execFileSync('ip', ['netns', 'exec', ns, 'ping', '-c', '3', '-i', '0.2', '-W', '1', '127.0.0.1'], { stdio: 'ignore' });
  await sleep(300);
  await Promise.all([nftSub.close(), ctSub.close(), nft.close(), ct.close(), heldSets.close(), logSub.close(), traceSub.close()]);
  if (logged === 0) throw new Error('no NFLOG packets delivered');
  if (traced === 0) throw new Error('no nftables trace events delivered');
  // One more subscription of each kind that is never closed: the environment's exit stops it.
  (await subscribeNftEvents(ns, () => {})).unref();
  (await ct.subscribe(() => {})).unref();
  (await binding().nflogSubscribe(ns, 8, 64, () => {})).unref();
  (await binding().nftTraceSubscribe(ns, () => {})).unref();
  console.log(`memcheck workload: ${ROUNDS} rounds, ${txs.length} nftables transactions and ${ctEvents.length} conntrack events seen`);
  if (txs.length === 0 || ctEvents.length === 0) throw new Error('no events delivered');
} finally {
  ip('netns', 'del', ns);
}
