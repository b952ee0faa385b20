import { describe, expect, it } from 'vitest';

import { eastWestPair } from '../../bench/sg-datapath.js';
import { workload } from '../../bench/workload.js';

describe('the east-west datapath pair', () => {
  it('is two ports of the routed network nearest the middle of the zone order, sharing a group', () => {
    const w = workload({ ports: 1000 });
    const pair = eastWestPair(w.state)!;
    const routed = w.state.networks!.filter((n) => n.mode !== 'bridged').sort((a, b) => a.zone - b.zone);
    expect(pair.networks).toBe(routed.length);
    expect(routed[pair.rank]!.id).toBe(pair.network);
    expect([pair.server.network_id, pair.client.network_id]).toEqual([pair.network, pair.network]);
    expect(pair.server.id).not.toBe(pair.client.id);
    expect(pair.server.security_groups!.some((g) => pair.client.security_groups!.includes(g))).toBe(true);
    // No network with two ports lies nearer the middle.
    const middle = (routed.length - 1) / 2;
    const twoPorts = routed.map((n, rank) => ({ rank, n: w.state.ports!.filter((p) => p.network_id === n.id).length })).filter((x) => x.n >= 2);
    for (const x of twoPorts) expect(Math.abs(x.rank - middle)).toBeGreaterThanOrEqual(Math.abs(pair.rank - middle));
    expect(pair.rank).toBeGreaterThan(0);
  });

  it('is none when no network has two ports', () => {
    expect(eastWestPair(workload({ ports: 1 }).state)).toBeUndefined();
  });
});
