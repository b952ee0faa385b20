/**
 * The drop log with real packets (docs/dataplane.md, "Drop log"): a network with `log_drops: 5` logs what its
 * ports' policy drops — NFLOG read over netlink by the native addon — and each record names the port, the
 * policy step and the 5-tuple; allowed packets leave no record, and a flood is cut to the rate limit. A network
 * with `log_accepts` also logs each new connection its ports allow (once per connection, in each mode, both
 * directions), cut to its rate limit too.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Portwall } from '../../src/apply/portwall.js';
import { subscribeDropLog, type LogRecord } from '../../src/droplog.js';
import type { EventSubscription } from '../../src/subscription.js';
import { isRoot } from '../helpers/netns.js';
import { ComputeHost, MODES, OUTSIDE, group, openFirewall, probe, sleep, state, until, type Mode, type Vm } from '../helpers/hosts.js';

const RATE = 5;

describe.skipIf(!isRoot)('drop log (routed)', () => {
  let h: ComputeHost;
  let vm: Vm;
  let fw: Portwall;
  let sub: EventSubscription;
  const records: LogRecord[] = [];

  beforeAll(async () => {
    h = new ComputeHost('routed', [{ id: 'net-a', zone: 101, macByte: 1 }]);
    vm = h.addVm('dlv', { n: 10 });
    const doc = state([{ ...h.networkState('net-a'), log_drops: RATE }], [
      group('sg', [{ id: 'ssh-a', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: `${OUTSIDE.a4}/32` }]),
    ], [h.port(vm, { security_groups: ['sg'] })]);
    fw = openFirewall(h);
    await fw.apply(doc);
    sub = await subscribeDropLog((rs) => records.push(...rs), { netns: h.host.name, model: () => fw.programmed() });
    await h.serve(vm.ns, { tcp: [22] }, 60);
  }, 60_000);

  afterAll(async () => {
    await sub?.close();
    await fw?.close();
    h?.destroy();
  });

  it('a dropped connection is logged with its port, step and 5-tuple; an allowed one is not', async () => {
    records.length = 0;
    const [allowed] = await probe(h.outside, [{ proto: 'tcp', host: vm.ip4, port: 22, src: OUTSIDE.a4, sport: 43001 }], 1);
    const [dropped] = await probe(h.outside, [{ proto: 'tcp', host: vm.ip4, port: 22, src: OUTSIDE.b4, sport: 43002 }], 1);
    expect([allowed, dropped]).toEqual(['open', 'timeout']);
    // The log keeps the kernel's order: once the drop is in, a record of the allowed connection would be too.
    await until(() => records.some((r) => r.src === OUTSIDE.b4 && r.sport === 43002));
    console.log(`drop log: ${JSON.stringify(records[0])}`);
    // The allowed connection leaves no record: neither a drop nor an accept (log_accepts is off).
    expect(records.filter((r) => r.src === OUTSIDE.a4)).toEqual([]);
    expect(records.filter((r) => r.event === 'accept')).toEqual([]);
    const mine = records.filter((r) => r.src === OUTSIDE.b4 && r.sport === 43002);
    expect(mine.length).toBeGreaterThanOrEqual(1);
    expect(mine[0]).toMatchObject({
      event: 'drop', step: 'no rule allows it', zone: 101, network: 'net-a', port: `port-${vm.name}`, direction: 'ingress',
      family: 4, protocol: 6, dst: vm.ip4, dport: 22,
    });
  });

  it('a spoofed source is logged as anti-spoof', async () => {
    records.length = 0;
    vm.ns.exec('ip', ['addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);
    try {
      await probe(vm.ns, [{ proto: 'udp', host: OUTSIDE.b4, port: 5000, src: '192.0.2.99', sport: 43003 }], 1);
    } finally {
      vm.ns.exec('ip', ['addr', 'del', '192.0.2.99/32', 'dev', 'eth0']);
    }
    await until(() => records.some((r) => r.src === '192.0.2.99'));
    expect(records.find((r) => r.src === '192.0.2.99')).toMatchObject({ step: 'IPv4 anti-spoof', zone: 101, network: 'net-a', protocol: 17, dport: 5000 });
  });

  it(`a flood is cut to the rate limit (${RATE}/s, burst ${RATE})`, async () => {
    await sleep(1500); // the limit's bucket refills
    records.length = 0;
    const t0 = Date.now();
    // 60 connection attempts at once, each a SYN and its retransmissions: well over the limit.
    await probe(h.outside, Array.from({ length: 60 }, (_, i) => ({ proto: 'tcp' as const, host: vm.ip4, port: 22, src: OUTSIDE.b4, sport: 44000 + i })), 1);
    const seconds = (Date.now() - t0) / 1000;
    await sleep(200);
    const n = records.filter((r) => r.src === OUTSIDE.b4).length;
    console.log(`drop log: 60 dropped connections in ${seconds.toFixed(1)} s -> ${n} records`);
    expect(n).toBeGreaterThanOrEqual(RATE);
    expect(n).toBeLessThanOrEqual(Math.ceil(RATE * (seconds + 0.5)) + RATE);
    // The kernel's counter saw every dropped packet, the log only the limited few.
    const c = await fw.counters();
    const drops = c.steps.filter((s) => s.step === 'no rule allows it' && s.chain.startsWith('ingress')).reduce((a, s) => a + s.packets, 0);
    expect(drops).toBeGreaterThan(n + 40);
  });
});

describe.skipIf(!isRoot).each(MODES)('accept log (%s)', (mode: Mode) => {
  let h: ComputeHost;
  let vm: Vm;
  let fw: Portwall;
  let sub: EventSubscription;
  const records: LogRecord[] = [];
  const accepts = (f: (r: LogRecord) => boolean = () => true) => records.filter((r) => r.event === 'accept' && f(r));

  beforeAll(async () => {
    h = new ComputeHost(mode, [{ id: 'net-a', zone: 102, bridge: 'br-al', macByte: 2 }]);
    vm = h.addVm('alv', { n: 10 });
    const doc = state([{ ...h.networkState('net-a'), log_accepts: RATE }], [
      group('sg', [
        { id: 'ssh-a', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: `${OUTSIDE.a4}/32` },
        { id: 'web-out', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 7000, port_range_max: 7000 },
      ]),
    ], [h.port(vm, { security_groups: ['sg'] })]);
    fw = openFirewall(h);
    await fw.apply(doc);
    sub = await subscribeDropLog((rs) => records.push(...rs), { netns: h.host.name, model: () => fw.programmed() });
    await h.serve(vm.ns, { tcp: [22] }, 90);
    await h.serve(h.outside, { tcp: [7000] }, 90);
  }, 60_000);

  afterAll(async () => {
    await sub?.close();
    await fw?.close();
    h?.destroy();
  });

  it('an allowed new connection is logged once, with port, direction, zone, verdict and 5-tuple; a dropped one is not logged as accepted', async () => {
    await sleep(1200); // the limit's bucket is full
    records.length = 0;
    const [allowed] = await probe(h.outside, [{ proto: 'tcp', host: vm.ip4, port: 22, src: OUTSIDE.a4, sport: 45001 }], 1);
    const [dropped] = await probe(h.outside, [{ proto: 'tcp', host: vm.ip4, port: 22, src: OUTSIDE.b4, sport: 45002 }], 1);
    const [out] = await probe(vm.ns, [{ proto: 'tcp', host: OUTSIDE.b4, port: 7000, sport: 45003 }], 1);
    expect([allowed, dropped, out]).toEqual(['open', 'timeout', 'open']);
    // In the kernel's order: once the last connection's record is in, the others' would be too.
    await until(() => accepts((r) => r.sport === 45003).length > 0);
    console.log(`[${mode}] accept log: ${JSON.stringify(accepts()[0])}`);
    // Once per connection: the handshake's later packets and the reply direction are not new.
    expect(accepts((r) => r.sport === 45001)).toEqual([{
      event: 'accept', verdict: 'accept', zone: 102, network: 'net-a', port: `port-${vm.name}`, direction: 'ingress',
      family: 4, protocol: 6, src: OUTSIDE.a4, dst: vm.ip4, sport: 45001, dport: 22,
    }]);
    expect(accepts((r) => r.sport === 45003)).toEqual([expect.objectContaining({
      verdict: 'accept', port: `port-${vm.name}`, direction: 'egress', src: vm.ip4, dst: OUTSIDE.b4, dport: 7000,
    })]);
    expect(accepts((r) => r.src === OUTSIDE.b4 || r.dst === OUTSIDE.a4)).toEqual([]);
    expect(records.filter((r) => r.event === 'drop')).toEqual([]); // log_drops is off
  });

  it(`allowed connections beyond the rate limit (${RATE}/s, burst ${RATE}) are not logged`, async () => {
    await sleep(1500);
    records.length = 0;
    const t0 = Date.now();
    const n = 40;
    const r = await probe(h.outside, Array.from({ length: n }, (_, i) => ({ proto: 'tcp' as const, host: vm.ip4, port: 22, src: OUTSIDE.a4, sport: 46000 + i })), 1);
    const seconds = (Date.now() - t0) / 1000;
    await sleep(200);
    expect(r.filter((x) => x === 'open').length).toBe(n);
    const logged = accepts((x) => x.src === OUTSIDE.a4).length;
    console.log(`[${mode}] accept log: ${n} allowed connections in ${seconds.toFixed(1)} s -> ${logged} records`);
    expect(logged).toBeGreaterThanOrEqual(RATE);
    expect(logged).toBeLessThanOrEqual(Math.ceil(RATE * (seconds + 0.5)) + RATE);
    expect(logged).toBeLessThan(n);
  });
});
