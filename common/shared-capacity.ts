import type { Caller } from '../schemas/auth.js';
import { FairShareError, UnavailableError } from './errors.js';

/** Seconds a caller past its share is told to wait: the units it holds free as its own requests end. */
const SHARE_RETRY_AFTER_SECONDS = 5;

/** Given back once, however many times it is called. */
export type Release = () => void;

/**
 * A capacity of one process that every owner draws on (event streams, upload slots, a thread's
 * queue): at most `capacity` units at once (503 past it), and at most `ownerShare` of them per owner
 * (429 with Retry-After past it), so no key holder can take it all. The admin has no share limit.
 */
export class SharedCapacity {
  private inUse = 0;
  private readonly held = new Map<string, number>();
  readonly perOwner: number;

  constructor(
    /** What a unit is, plural, for the answers: "event streams". */
    private readonly what: string,
    readonly capacity: number,
    /** The fraction of the capacity one owner may hold (at least one unit). */
    ownerShare: number,
  ) {
    this.perOwner = Math.max(1, Math.floor(capacity * ownerShare));
  }

  acquire(caller: Caller): Release {
    if (this.inUse >= this.capacity)
      throw new UnavailableError(`this API process has ${this.inUse} ${this.what} in use, its most; retry shortly`);
    const mine = this.held.get(caller.owner) ?? 0;
    if (!caller.admin && mine >= this.perOwner)
      throw new FairShareError(
        `you hold ${mine} of this API process's ${this.capacity} ${this.what}, one owner's share (OWNER_SHARE_PERCENT); retry when one of yours ends`,
        SHARE_RETRY_AFTER_SECONDS,
      );
    this.inUse++;
    this.held.set(caller.owner, mine + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.inUse--;
      const left = (this.held.get(caller.owner) ?? 1) - 1;
      if (left > 0) this.held.set(caller.owner, left);
      else this.held.delete(caller.owner);
    };
  }

  /** Units in use now: all of them, or one owner's. */
  used(owner?: string): number {
    return owner === undefined ? this.inUse : (this.held.get(owner) ?? 0);
  }
}
