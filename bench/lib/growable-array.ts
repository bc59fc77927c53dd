/**
 * Append-only array of doubles that grows by doubling, so that recording
 * one value per packet or frame costs no allocation in the common case.
 */
export class GrowableFloat64Array {
  private values: Float64Array;
  private count = 0;

  constructor(initialCapacity = 4096) {
    this.values = new Float64Array(Math.max(1, initialCapacity));
  }

  get length(): number {
    return this.count;
  }

  push(value: number): void {
    if (this.count === this.values.length) {
      const grown = new Float64Array(this.values.length * 2);
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.count] = value;
    this.count += 1;
  }

  /** Returns the values pushed so far, as a view that later pushes may leave stale. */
  view(): Float64Array {
    return this.values.subarray(0, this.count);
  }
}
