/**
 * What conntrack and nftables event subscriptions share on the JS side: a closed flag that every delivery
 * checks, error reporting that never throws into the addon, and the handle object (close, ref, unref).
 *
 * The addon's handle (`NativeSubscription`) is final at once as well; the flag here makes that independent of
 * the binding (an injected double) and covers a delivery that is already running when close() is called.
 */
import { PortwallError } from './errors.js';
import type { NativeSubscription } from './native.js';

/** Shared by a subscription's callback and its handle; the callback must not reference the handle. */
export interface SubscriptionState {
  closed: boolean;
}

/**
 * A subscription's error reporter: `onError`, else a process warning; nothing once closed. Never throws (an
 * onError that throws has nowhere left to report to).
 */
export function errorReporter(state: SubscriptionState, onError: ((error: PortwallError) => void) | undefined): (error: PortwallError) => void {
  return (error) => {
    if (state.closed) return;
    if (!onError) {
      process.emitWarning(error);
      return;
    }
    try {
      onError(error);
    } catch {
      // dropped
    }
  };
}

/**
 * Calls `listener` with what `decode` makes of a delivery, unless the subscription was closed: a delivery that
 * cannot be decoded is reported as ERR_WIRE and counted as lost; a listener that throws is reported as
 * ERR_LISTENER. `what` names the subscription in messages.
 */
export function deliver<Raw, T>(
  state: SubscriptionState,
  report: (error: PortwallError) => void,
  what: string,
  raw: Raw,
  lost: number,
  decode: (raw: Raw) => T[],
  listener: (items: T[], lost: number) => void,
): void {
  if (state.closed) return;
  let items: T[];
  try {
    items = decode(raw);
  } catch (cause) {
    report(new PortwallError('ERR_WIRE', `${what}: cannot decode a delivery: ${String(cause)}`, { cause }));
    items = [];
    lost += 1;
  }
  if (items.length === 0 && lost === 0) return;
  try {
    listener(items, lost);
  } catch (cause) {
    report(new PortwallError('ERR_LISTENER', `${what}: the listener threw: ${String(cause)}`, { cause }));
  }
}

/** An open event subscription. */
export interface EventSubscription {
  /** The namespace subscribed to (null: the caller's). */
  readonly netns: string | null;
  /**
   * Stops the subscription for good: no listener or onError call happens after close() is called (a delivery
   * already queued is dropped). Resolves once the reader thread has ended and its socket is closed. Calling
   * it again returns the same promise. Never rejects.
   */
  close(): Promise<void>;
  /** Lets the process exit while the subscription is open (it keeps the event loop alive by default). */
  unref(): void;
  /** Undoes {@link unref}. */
  ref(): void;
}

/** The {@link EventSubscription} over a native handle and the state its callback shares. */
export class Subscription implements EventSubscription {
  readonly netns: string | null;
  readonly #handle: NativeSubscription;
  readonly #state: SubscriptionState;
  #closing: Promise<void> | undefined;

  constructor(netns: string | null, handle: NativeSubscription, state: SubscriptionState) {
    this.netns = netns;
    this.#handle = handle;
    this.#state = state;
  }

  close(): Promise<void> {
    this.#state.closed = true;
    // Called at once (the addon marks itself closed synchronously); a throw becomes a rejection, then nothing.
    this.#closing ??= (async () => this.#handle.close())().catch(() => undefined);
    return this.#closing;
  }

  unref(): void {
    this.#handle.unref();
  }

  ref(): void {
    this.#handle.ref();
  }
}
