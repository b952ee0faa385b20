/**
 * The held netlink socket of a persistent client (`Nft`, `ConntrackClient`): one socket per client, opened
 * lazily, with the client's calls queued on it in order (docs/netlink.md).
 *
 * Closing a netfilter socket right after an nf_tables commit that deleted anything waits for the kernel's
 * transaction-destroy work (an RCU grace period, 7–15 ms), whatever the socket was used for; a client that
 * holds its socket pays that once, when it is closed, instead of on every call.
 */

/** A socket the binding holds open across calls (`NativeNftSocket`, `NativeConntrackSocket`). */
export interface ClosableSocket {
  /** Closes it (idempotent); calls made on it afterwards reject. */
  close(): void;
}

/** How a client opens its held socket: the binding's `…SocketOpen`, bound to the binding, if it has one. */
export type SocketOpener<B, S extends ClosableSocket> = (native: B) => ((netns: string | null) => Promise<S>) | undefined;

// The socket of one open: the binding that opened it, the open (one in flight at a time), and the last call
// queued on it, settled or not — calls are chained so that at most one waits on a pool thread.
interface Held<B, S> {
  readonly native: B;
  readonly socket: Promise<S>;
  tail: Promise<unknown>;
  /** The socket once opened (for {@link HeldSocketQueue.runNow}). */
  open?: S;
  /** Calls queued and not yet settled. */
  queued: number;
}

/**
 * One held socket and the queue of calls on it.
 *
 * - The socket is opened by the first {@link HeldSocketQueue.run}, with the binding that call resolved; calls
 *   made while it opens wait for that one open. A failed open rejects the calls waiting for it, and the next
 *   call tries again.
 * - Calls run one after another in the order they were made, each on the binding that opened the socket; a
 *   rejected call does not stop the ones after it.
 * - A binding without an opener (a hand-written test double) is used with a socket per call: the call gets
 *   the namespace as its target.
 *
 * @typeParam B the binding (or the part of it the client uses)
 * @typeParam S the binding's held-socket handle
 */
export class HeldSocketQueue<B, S extends ClosableSocket> {
  /** The namespace the socket is opened in (null: the caller's). */
  readonly netns: string | null;
  readonly #opener: SocketOpener<B, S>;
  #held: Held<B, S> | undefined;

  /**
   * @param netns where to open the socket
   * @param opener picks the binding's open function, e.g. `(b) => b.nftSocketOpen?.bind(b)`
   */
  constructor(netns: string | null, opener: SocketOpener<B, S>) {
    this.netns = netns;
    this.#opener = opener;
  }

  /**
   * Queues `fn` on the held socket, opening it first (with `native()`) when none is. `fn` gets the binding
   * and the target to pass it: the socket, or the namespace when the binding cannot open sockets.
   */
  run<T>(native: () => B, fn: (native: B, target: S | string | null) => Promise<T>): Promise<T> {
    let held = this.#held;
    if (!held) {
      const binding = native();
      const open = this.#opener(binding);
      if (!open) return fn(binding, this.netns);
      held = this.#held = this.#open(binding, open);
    }
    const h = held;
    const call = h.tail.then(async () => fn(h.native, await h.socket));
    h.queued++;
    const settled = () => void h.queued--;
    h.tail = call.then(settled, settled);
    return call;
  }

  /**
   * Runs `fn` at once, on the caller's stack, when the socket is open and no call is queued on it (so order
   * is kept); else returns undefined without calling it, and the caller queues with {@link HeldSocketQueue.run}.
   */
  runNow<T>(fn: (native: B, socket: S) => T): T | undefined {
    const h = this.#held;
    if (!h?.open || h.queued > 0) return undefined;
    return fn(h.native, h.open);
  }

  #open(native: B, open: (netns: string | null) => Promise<S>): Held<B, S> {
    const held: Held<B, S> = { native, socket: open(this.netns), tail: Promise.resolve(), queued: 0 };
    held.socket.then((s) => { held.open = s; }, () => undefined);
    // A failed open is reported to the calls waiting for it; the next call tries again.
    held.socket.catch(() => {
      if (this.#held === held) this.#held = undefined;
    });
    return held;
  }

  /**
   * Waits until every call already queued has settled, then closes the socket (which may take the kernel a
   * few milliseconds after nf_tables deletions). A later {@link HeldSocketQueue.run} opens a new socket.
   * Resolves at once when no socket is open; never rejects.
   */
  async close(): Promise<void> {
    const held = this.#held;
    if (!held) return;
    this.#held = undefined;
    await held.tail;
    const socket = await held.socket.catch(() => undefined);
    socket?.close();
  }
}
