/**
 * Whether a `transferring` hand-off still has its migration runner (docs/federation.md
 * §10): the scheduler hands a waiting migration back and runs it again a moment later, so
 * a runner missing once is not a runner gone. Only one missing for longer than the grace
 * (a server that restarted mid-transfer) lets the hand-off be called off.
 */
export class RunnerGrace {
  private readonly missingSince = new Map<string, number>();

  constructor(
    private readonly graceMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** True while `running` or missing for less than the grace. */
  alive(handoffId: string, running: boolean): boolean {
    if (running) {
      this.missingSince.delete(handoffId);
      return true;
    }
    const since = this.missingSince.get(handoffId) ?? this.now();
    this.missingSince.set(handoffId, since);
    return this.now() - since < this.graceMs;
  }

  /** Forgets a hand-off that left `transferring`. */
  forget(handoffId: string): void {
    this.missingSince.delete(handoffId);
  }
}
