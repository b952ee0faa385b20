/**
 * Little-endian write and read cursors for the wire primitives of docs/wire.md.
 *
 * The writer grows one Buffer by doubling, so a 50k-rule batch costs a handful of copies, not one per field.
 */
import { PortwallError } from '../errors.js';

/** Appends wire primitives to a growing buffer. */
export class WireWriter {
  #buf: Buffer;
  #pos = 0;

  constructor(initialSize = 4096) {
    // Never from Node's shared pool: a batch's buffer is its own, so the addon may release it (nftCommit).
    this.#buf = Buffer.allocUnsafeSlow(initialSize);
  }

  #reserve(n: number): number {
    const at = this.#pos;
    if (at + n > this.#buf.length) {
      const next = Buffer.allocUnsafeSlow(Math.max(this.#buf.length * 2, at + n));
      this.#buf.copy(next, 0, 0, at);
      this.#buf = next;
    }
    this.#pos = at + n;
    return at;
  }

  // Each writer reserves first and only then reads #buf: `this.#buf.write(…, this.#reserve(n))` would pick
  // the old buffer before #reserve() replaces it.
  u8(v: number): void {
    const at = this.#reserve(1);
    this.#buf.writeUInt8(v, at);
  }

  u16(v: number): void {
    const at = this.#reserve(2);
    this.#buf.writeUInt16LE(v, at);
  }

  u32(v: number): void {
    const at = this.#reserve(4);
    this.#buf.writeUInt32LE(v >>> 0, at);
  }

  i32(v: number): void {
    const at = this.#reserve(4);
    this.#buf.writeInt32LE(v, at);
  }

  u64(v: bigint): void {
    const at = this.#reserve(8);
    this.#buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
  }

  /** u16 length + UTF-8 bytes. */
  str(s: string): void {
    const len = Buffer.byteLength(s);
    this.u16(len);
    const at = this.#reserve(len);
    this.#buf.write(s, at, len, 'utf8');
  }

  /** u32 length + raw bytes. */
  bytes(b: Uint8Array): void {
    this.u32(b.length);
    const at = this.#reserve(b.length);
    const buf = this.#buf;
    // Most fields are a few bytes (keys, comments): a loop beats set()'s per-call cost there.
    if (b.length > 64) buf.set(b, at);
    else for (let i = 0; i < b.length; i++) buf[at + i] = b[i]!;
  }

  /**
   * Reserves `n` zero bytes for the caller to fill in place through {@link buffer}; returns their position.
   * The buffer may move at the next write, so fill them first.
   */
  zeroed(n: number): number {
    const at = this.#reserve(n);
    const buf = this.#buf;
    for (let i = at; i < at + n; i++) buf[i] = 0;
    return at;
  }

  /** The buffer being written (for filling what {@link zeroed} reserved). */
  get buffer(): Buffer {
    return this.#buf;
  }

  /** Writes a u32 to fill in later with {@link patchU32} (a count not known yet); returns its position. */
  placeholderU32(): number {
    const at = this.#pos;
    this.u32(0);
    return at;
  }

  /** Overwrites the u32 at `at` (from {@link placeholderU32}). */
  patchU32(at: number, v: number): void {
    this.#buf.writeUInt32LE(v >>> 0, at);
  }

  /** The bytes written so far (a view, not a copy). */
  finish(): Buffer {
    return this.#buf.subarray(0, this.#pos);
  }
}

/** Reads wire primitives; any overrun is ERR_WIRE (the stream came from a buggy or foreign producer). */
export class WireReader {
  #pos = 0;

  constructor(private readonly buf: Buffer) {}

  get done(): boolean {
    return this.#pos >= this.buf.length;
  }

  get position(): number {
    return this.#pos;
  }

  #take(n: number): number {
    const at = this.#pos;
    if (at + n > this.buf.length) {
      throw new PortwallError('ERR_WIRE', `wire stream truncated at byte ${at} (need ${n} of ${this.buf.length - at})`);
    }
    this.#pos = at + n;
    return at;
  }

  u8(): number {
    return this.buf.readUInt8(this.#take(1));
  }

  u16(): number {
    return this.buf.readUInt16LE(this.#take(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.#take(4));
  }

  i32(): number {
    return this.buf.readInt32LE(this.#take(4));
  }

  u64(): bigint {
    return this.buf.readBigUInt64LE(this.#take(8));
  }

  str(): string {
    const len = this.u16();
    const at = this.#take(len);
    return this.buf.toString('utf8', at, at + len);
  }

  /** A copy, so decoded objects never pin the (possibly large) dump buffer. */
  bytes(): Uint8Array {
    const len = this.u32();
    const at = this.#take(len);
    return new Uint8Array(this.buf.subarray(at, at + len));
  }
}
