/**
 * Netlink sockets of this process, counted from outside the addon: the socket inodes among /proc/self/fd
 * that a namespace's own /proc/net/netlink lists.
 */
import { readdirSync, readlinkSync } from 'node:fs';

import type { Netns } from './netns.js';

const NETLINK_NETFILTER = '12';

/** One of our netlink sockets as /proc/net/netlink shows it. */
export interface NetlinkSocket {
  inode: string;
  portid: string;
}

/** This process's NETLINK_NETFILTER sockets that live in `ns` (held sockets, subscriptions, calls in flight). */
export function netfilterSockets(ns: Netns): NetlinkSocket[] {
  const ours = new Set<string>();
  for (const fd of readdirSync('/proc/self/fd')) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // the directory's own fd, closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(link);
    if (m) ours.add(m[1]!);
  }
  // Columns: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode; /proc/net is the reader's namespace.
  const rows = ns.exec('cat', ['/proc/net/netlink']).trim().split('\n').slice(1).map((l) => l.trim().split(/\s+/));
  return rows
    .filter((c) => c[1] === NETLINK_NETFILTER && ours.has(c[9]!))
    .map((c) => ({ inode: c[9]!, portid: c[2]! }));
}
