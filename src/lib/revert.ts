/**
 * A reverter for multi-step actions (after Incus's shared/revert): register an undo after
 * each step that succeeded; on failure `fail()` runs them in reverse order, on success
 * `success()` drops them. Undo errors are collected, never thrown over the original error.
 */

/** Collects undo steps for a multi-step action. */
export class Reverter {
  private undos: Array<() => Promise<void> | void> = [];

  /** Registers the undo for a step that just succeeded. */
  add(undo: () => Promise<void> | void): void {
    this.undos.push(undo);
  }

  /** Runs every registered undo, newest first; returns the errors undos raised. */
  async fail(): Promise<unknown[]> {
    const errors: unknown[] = [];
    const undos = this.undos.reverse();
    this.undos = [];
    for (const undo of undos) {
      try {
        await undo();
      } catch (err) {
        errors.push(err);
      }
    }
    return errors;
  }

  /** Drops every undo: the action completed. */
  success(): void {
    this.undos = [];
  }
}
