/**
 * The built-in demo: a client, a "compute host" and a "VM" in three fresh network namespaces, the host
 * filtering forwarded traffic with a portwall table; shows traffic allowed, then blocked by a one-element
 * change committed atomically over netlink. It cleans up after itself.
 *
 * The demo is a harness, not product path: it creates namespaces with `ip` and sends traffic with `ping`.
 * Everything it programs goes through portwall's library (no nft/iptables).
 */
import { randomBytes } from 'node:crypto';

import { openNft } from '../src/nft/client.js';
import { F, accept, counter, drop, eq, inSet, rule } from '../src/nft/match.js';
import type { Elements, NftSet } from '../src/nft/types.js';
import { Netns, ping, veth } from '../test/helpers/netns.js';

const CLIENT = '198.51.100.10';
const VM = '203.0.113.10';

function say(msg: string): void {
  process.stdout.write(`${msg}\n`);
}

export async function runDemo(): Promise<boolean> {
  process.env.PORTWALL_TEST_RUN ??= `pwdemo${randomBytes(2).toString('hex')}`;
  const spaces: Netns[] = [];
  try {
    const client = new Netns('client');
    const host = new Netns('host');
    const vm = new Netns('vm');
    spaces.push(client, host, vm);
    veth(client, 'eth0', host, 'uplink', { a: [`${CLIENT}/24`], b: ['198.51.100.1/24'] });
    veth(host, 'tapdemo0', vm, 'eth0', { a: ['203.0.113.1/24'], b: [`${VM}/24`] });
    client.exec('ip', ['route', 'add', 'default', 'via', '198.51.100.1']);
    vm.exec('ip', ['route', 'add', 'default', 'via', '203.0.113.1']);
    host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
    say(`namespaces: client ${client.name} (${CLIENT}) → host ${host.name} → vm ${vm.name} (${VM})`);

    const nft = openNft({ netns: host.name });
    const family = 'inet' as const;
    const table = 'portwall_demo';
    const allow: NftSet = {
      kind: 'set', family, table, name: 'allow', key: ['ipv4_addr', 'inet_proto'], counter: true,
      comment: 'who may reach the VM',
    };
    const member: Elements = {
      kind: 'elements', family, table, set: 'allow',
      elements: [{ key: [CLIENT, 'icmp'], comment: 'sg-rule demo-icmp' }],
    };
    const tx = nft.transaction()
      .add({ kind: 'table', family, name: table })
      .add({ kind: 'chain', family, table, name: 'forward', hook: 'forward', priority: 0, type: 'filter', policy: 'drop' })
      .add(allow)
      .add(member)
      .add({ kind: 'rule', family, table, chain: 'forward', exprs: rule(family, eq(F.ct.state, 'established,related'), accept()) })
      .add({ kind: 'rule', family, table, chain: 'forward', exprs: rule(family, eq(F.meta.iifname, 'tapdemo0'), accept()), comment: 'VM egress' })
      .add({ kind: 'rule', family, table, chain: 'forward', exprs: rule(family, inSet([F.ip.saddr, F.meta.l4proto], allow), counter(), accept()), comment: 'allowed by set' })
      .add({ kind: 'rule', family, table, chain: 'forward', exprs: rule(family, counter(), drop()), comment: 'default drop' });
    say(`\nprogramming the host in one atomic batch:\n${indent(tx.toString())}`);
    const { genid } = await tx.commit();
    say(`committed (ruleset generation ${genid})`);

    const before = ping(client, VM, { count: 1, waitS: 1 });
    say(`\nping client → vm with "${CLIENT} . icmp" in @allow: ${before ? 'ALLOWED (reply received)' : 'BLOCKED'}`);

    const removal = nft.transaction().delete(member);
    say(`\nremoving the member (one verdict-free element change):\n${indent(removal.toString())}`);
    await removal.commit();
    const after = ping(client, VM, { count: 1, waitS: 1 });
    say(`ping client → vm without the member: ${after ? 'ALLOWED (reply received)' : 'BLOCKED (no reply)'}`);

    const listed = await nft.list({ family, table });
    const rules = listed.objects.filter((o) => o.kind === 'rule').length;
    say(`\nthe kernel holds table ${family} ${table} with ${rules} rules (listed back over netlink)`);
    const ok = before && !after;
    say(ok ? '\ndemo: OK — allowed, then blocked' : '\ndemo: UNEXPECTED RESULT');
    return ok;
  } finally {
    for (const ns of spaces.reverse()) ns.destroy();
    say('namespaces removed');
  }
}

function indent(text: string): string {
  return text.trimEnd().split('\n').map((l) => `  ${l}`).join('\n');
}
