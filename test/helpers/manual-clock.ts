import type { Clock } from '../../src/clock.ts';

/** A clock whose time moves only when the test advances it, firing due timers in order. */
export class ManualClock implements Clock {
  private currentMs: number;
  private nextId = 1;
  private readonly timers = new Map<number, { dueMs: number; callback: () => void }>();

  constructor(startMs = 1000) {
    this.currentMs = startMs;
  }

  nowMs(): number {
    return this.currentMs;
  }

  setTimeout(callback: () => void, delayMs: number): NodeJS.Timeout {
    const id = this.nextId++;
    this.timers.set(id, { dueMs: this.currentMs + Math.max(0, delayMs), callback });
    return id as unknown as NodeJS.Timeout;
  }

  clearTimeout(timer: NodeJS.Timeout): void {
    this.timers.delete(timer as unknown as number);
  }

  /** Moves time forward by `durationMs`, running each timer at its due time. */
  advance(durationMs: number): void {
    const endMs = this.currentMs + durationMs;
    for (;;) {
      let nextId: number | undefined;
      let nextDueMs = Number.POSITIVE_INFINITY;
      for (const [id, timer] of this.timers) {
        if (timer.dueMs < nextDueMs) {
          nextDueMs = timer.dueMs;
          nextId = id;
        }
      }
      if (nextId === undefined || nextDueMs > endMs) {
        break;
      }
      const timer = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      this.currentMs = Math.max(this.currentMs, timer.dueMs);
      timer.callback();
    }
    this.currentMs = endMs;
  }
}
