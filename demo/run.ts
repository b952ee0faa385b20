/**
 * The built-in demo: a compute host with two VMs behind routed tap ports and an outside client, each in a
 * fresh network namespace. portwall programs Neutron-style security groups on the host in one atomic batch,
 * then the demo shows traffic allowed and blocked, a remote-group rule, anti-spoofing, and a running ping cut
 * the moment its rule is removed (conntrack cleanup, seed 000). It removes its namespaces when done.
 *
 * The demo is a harness, not product path: it builds namespaces with `ip` and sends traffic with `ping` and
 * small probes (the scenario tests' helpers). Everything it programs goes through portwall's library.
 */
import { randomBytes } from 'node:crypto';

import type { Portwall } from '../src/apply/portwall.js';
import type { StateInput } from '../src/model/schema.js';
import {
  ComputeHost, EGRESS_ANY, OUTSIDE, group, openFirewall, pingCount, probe, sleep, state, type RuleSpec, type Vm,
} from '../test/helpers/hosts.js';

const say = (msg = ''): void => void process.stdout.write(`${msg}\n`);
const mark = (ok: boolean): string => (ok ? 'as expected' : 'UNEXPECTED');

const HTTP: RuleSpec = { id: 'web-http', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '198.51.100.0/24' };
const PING: RuleSpec = { id: 'web-ping', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp', remote_ip_prefix: '198.51.100.0/24' };
const DB: RuleSpec = { id: 'db-pg', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 5432, port_range_max: 5432, remote_group_id: 'sg-web' };

// Stable ids, so a rule removed elsewhere in the group leaves these elements (and their comments) alone.
const egress = (g: string): RuleSpec[] => EGRESS_ANY.map((r, i) => ({ ...r, id: `${g}-egress-${i}` }));

function desired(h: ComputeHost, web: Vm, db: Vm, webRules: RuleSpec[]): StateInput {
  return state(
    [h.networkState('net-demo')],
    [group('sg-web', [...webRules, ...egress('web')]), group('sg-db', [DB, ...egress('db')])],
    [h.port(web, { security_groups: ['sg-web'] }), h.port(db, { security_groups: ['sg-db'] })],
  );
}

async function applyAndSay(pw: Portwall, s: StateInput, what: string): Promise<number> {
  const t0 = performance.now();
  const r = await pw.apply(s);
  const ms = (performance.now() - t0).toFixed(1);
  say(`\n== ${what}`);
  say(`   one atomic batch: ${r.operations} operations (+${r.elements.added}/-${r.elements.removed} elements) in ${ms} ms;` +
    ` conntrack entries deleted: ${r.cleanup.deleted}`);
  for (const line of r.plan.split('\n').filter(Boolean).slice(0, 8)) say(`     ${line}`);
  return r.cleanup.deleted;
}

/** Runs the demo; resolves to whether every check came out as expected. */
export async function runDemo(): Promise<boolean> {
  process.env.PORTWALL_TEST_RUN ??= `pwdemo${randomBytes(2).toString('hex')}`;
  const h = new ComputeHost('routed', [{ id: 'net-demo', zone: 101, macByte: 1 }]);
  const checks: boolean[] = [];
  const check = (ok: boolean, text: string): void => {
    checks.push(ok);
    say(`   ${text} — ${mark(ok)}`);
  };
  try {
    const web = h.addVm('web', { n: 10 });
    const db = h.addVm('db', { n: 11 });
    say(`compute host ${h.host.name}: VM "web" ${web.ip4} on ${web.device}, VM "db" ${db.ip4} on ${db.device};`);
    say(`outside client ${h.outside.name} at ${OUTSIDE.a4}`);
    const servers = [await h.serve(web.ns, { tcp: [80, 81] }, 60), await h.serve(db.ns, { tcp: [5432] }, 60)];
    void servers;

    const pw = openFirewall(h);
    await applyAndSay(pw, desired(h, web, db, [HTTP, PING]), 'apply: sg-web (tcp 80 + ping from 198.51.100.0/24), sg-db (tcp 5432 from members of sg-web)');

    const [http, other] = await probe(h.outside, [{ proto: 'tcp', host: web.ip4, port: 80 }, { proto: 'tcp', host: web.ip4, port: 81 }]);
    check(http === 'open', `outside → web tcp/80: ${http}`);
    check(other === 'timeout', `outside → web tcp/81: ${other} (no rule)`);
    const [fromOutside] = await probe(h.outside, [{ proto: 'tcp', host: db.ip4, port: 5432 }]);
    check(fromOutside === 'timeout', `outside → db tcp/5432: ${fromOutside} (not a member of sg-web)`);
    const [fromWeb] = await probe(web.ns, [{ proto: 'tcp', host: db.ip4, port: 5432 }]);
    check(fromWeb === 'open', `web → db tcp/5432: ${fromWeb} (web is a member of sg-web)`);

    web.ns.exec('ip', ['addr', 'add', '192.0.2.99/32', 'dev', 'eth0']);
    const [spoofed] = await probe(web.ns, [{ proto: 'tcp', host: db.ip4, port: 5432, src: '192.0.2.99' }]);
    check(spoofed === 'timeout', `web → db from a spoofed source 192.0.2.99: ${spoofed} (anti-spoof)`);

    // A running ping, then the ping rule goes away: the established flow must stop at once.
    const flow = h.longPing(h.outside, web.ip4, { intervalS: 0.1, count: 60 });
    await flow.waitReplies(5);
    const t0 = Date.now();
    const deleted = await applyAndSay(pw, desired(h, web, db, [HTTP]), 'apply: the ping rule removed while a ping runs');
    await sleep(1500);
    const late = flow.repliesAfter(t0 + 300).length;
    flow.stop();
    check(deleted > 0 && late === 0, `running ping: ${flow.replies().length} replies before, ${late} after the removal`);
    check((await pingCount(h.outside, web.ip4, { count: 2 })) === 0, 'a new ping to web is dropped');

    const again = await pw.apply(desired(h, web, db, [HTTP]));
    check(!again.changed, 'applying the same state again changes nothing');
    const status = await pw.status();
    say(`\nthe host's tables ${status.tables.map((t) => `${t.family} ${t.name}`).join(', ')} hold ${status.counts.rules} rules, ` +
      `${status.counts.sets} sets and ${status.counts.elements} elements (listed back over netlink)`);
  } finally {
    h.destroy();
    say('namespaces removed');
  }
  const ok = checks.every(Boolean);
  say(ok ? `\ndemo: OK — ${checks.length} checks as expected` : '\ndemo: SOMETHING UNEXPECTED HAPPENED');
  return ok;
}
