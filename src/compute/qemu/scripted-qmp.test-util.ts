/**
 * Test-only: a scripted QmpClient stand-in shared by the QMP-level unit tests (not part of
 * the build; *.test-util.ts is excluded from tsconfig.json and is not a test file).
 */
import type { QmpClient, QmpEvent } from "./qmp.js";

/** A QmpClient stand-in: records commands, answers from per-command handlers, emits events. */
export class ScriptedQmp {
  readonly calls: Array<{ command: string; args?: Record<string, unknown> }> = [];
  private readonly handlers = new Map<string, (args: Record<string, unknown> | undefined) => unknown>();
  private readonly events = new Set<(ev: QmpEvent) => void>();

  /** Answers `command` with what `handler` returns (or rejects with what it throws). */
  on(command: string, handler: (args: Record<string, unknown> | undefined) => unknown): this {
    this.handlers.set(command, handler);
    return this;
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    this.calls.push(args === undefined ? { command } : { command, args });
    const handler = this.handlers.get(command);
    try {
      return Promise.resolve(handler ? handler(args) : {});
    } catch (err) {
      return Promise.reject(err);
    }
  }

  onEvent(listener: (ev: QmpEvent) => void): () => void {
    this.events.add(listener);
    return () => this.events.delete(listener);
  }

  onClose(): () => void {
    return () => {};
  }

  emit(event: string, data?: Record<string, unknown>): void {
    for (const l of [...this.events])
      l({ event, data, timestamp: { seconds: 0, microseconds: 0 } } as QmpEvent);
  }

  get commands(): string[] {
    return this.calls.map((c) => c.command);
  }

  get client(): QmpClient {
    return this as unknown as QmpClient;
  }
}
