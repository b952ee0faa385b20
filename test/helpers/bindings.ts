/**
 * The real nftables binding with some of its calls replaced — a spy or a gate in front of the kernel. Every call
 * not replaced goes to the addon with all its arguments.
 */
import { binding, type NftBinding } from '../../src/native.js';

export function realBinding(replace: Partial<NftBinding> = {}): NftBinding {
  const real = binding();
  return {
    nftSocketOpen: (netns) => real.nftSocketOpen!(netns),
    nftCommit: (target, batch, genid, release) => real.nftCommit(target, batch, genid, release),
    nftCommitSync: (target, batch, genid) => real.nftCommitSync!(target, batch, genid),
    nftList: (target, family, table, elementsOf, namedSetsOnly) => real.nftList(target, family, table, elementsOf, namedSetsOnly),
    nftGenid: (target) => real.nftGenid(target),
    nftEncode: (batch) => real.nftEncode(batch),
    nftSendEncoded: (target, netlink) => real.nftSendEncoded(target, netlink),
    ...replace,
  };
}
