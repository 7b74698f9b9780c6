/**
 * A QMP session over a unix socket: connects, reads the greeting, negotiates capabilities,
 * matches id-tagged replies to requests, fans events out to listeners, and fails every
 * pending request when the connection ends. Wire encoding lives in qmp-wire.ts; one typed
 * function per command lives in commands.ts.
 */
import net from "node:net";
import { describeError, NovaError } from "../../lib/errors.js";
import {
  encodeQmpCommand,
  QmpDecoder,
  type QmpEvent,
  type QmpGreeting,
  type QmpMessage,
} from "./qmp-wire.js";

export type { QmpEvent, QmpGreeting, QmpVersion } from "./qmp-wire.js";

/** Options for QmpClient.connect. */
export interface QmpConnectOptions {
  /** Bound on connecting, the greeting and capability negotiation. @defaultValue 5000 */
  timeoutMs?: number;
}

/** Options for one QMP command. */
export interface QmpExecuteOptions {
  /** Bound on waiting for the reply. @defaultValue 30000 */
  timeoutMs?: number;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const DEFAULT_EXECUTE_TIMEOUT_MS = 30_000;

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** A negotiated QMP session with one QEMU process. */
export class QmpClient {
  private readonly decoder = new QmpDecoder();
  private readonly pending = new Map<number, Pending>();
  private readonly eventListeners = new Set<(ev: QmpEvent) => void>();
  private readonly closeListeners = new Set<(err?: Error) => void>();
  private nextId = 1;
  private closeError: Error | undefined;
  private isClosed = false;
  private readonly closedPromise: Promise<void>;
  private markClosed!: () => void;
  private greetingResolver: ((g: QmpGreeting) => void) | undefined;
  private receivedGreeting: QmpGreeting | undefined;

  private constructor(
    private readonly socket: net.Socket,
    /** The socket path, for error messages. */
    readonly socketPath: string,
  ) {
    this.closedPromise = new Promise((resolve) => {
      this.markClosed = resolve;
    });
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      this.fail(this.protocolError(`QMP socket error: ${err.message}`, err, err.code)),
    );
    socket.on("close", () => this.fail(this.protocolError("QMP connection closed by QEMU")));
  }

  /** Connects to QEMU's QMP socket, reads the greeting and leaves negotiation mode. */
  static async connect(socketPath: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const socket = net.createConnection({ path: socketPath });
    const client = new QmpClient(socket, socketPath);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new NovaError(
              "NOVA_TIMEOUT",
              `Timed out after ${timeoutMs} ms connecting to QMP socket ${socketPath} (is another client attached?)`,
              { details: { socketPath } },
            ),
          ),
        timeoutMs,
      );
    });
    try {
      client.receivedGreeting = await Promise.race([client.waitGreeting(), timeout]);
      await Promise.race([client.execute("qmp_capabilities", undefined, { timeoutMs }), timeout]);
      return client;
    } catch (err) {
      await client.close();
      if (err instanceof NovaError && err.code !== "NOVA_QMP_PROTOCOL") throw err;
      const details = err instanceof NovaError ? err.details : { socketPath };
      throw new NovaError(
        "NOVA_QMP_PROTOCOL",
        `Failed connecting to QMP socket ${socketPath}: ${describeError(err)}`,
        {
          details,
          cause: err,
        },
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** The greeting QEMU sent (its version and capabilities). */
  get greeting(): QmpGreeting {
    return this.receivedGreeting!;
  }

  /** True once the connection is gone; every later execute fails with NOVA_QMP_PROTOCOL. */
  get closed(): boolean {
    return this.isClosed;
  }

  /**
   * Runs one command and resolves with its `return` value. A QMP error reply becomes
   * NOVA_QEMU_ERROR with details {command, qmpClass, desc}; a broken session NOVA_QMP_PROTOCOL.
   */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    opts: QmpExecuteOptions = {},
  ): Promise<T> {
    if (this.isClosed) {
      return Promise.reject(
        this.protocolError(`Failed running QMP command ${command}: connection is closed`, this.closeError),
      );
    }
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_EXECUTE_TIMEOUT_MS;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        // A late reply for this id is dropped by onMessage: the map entry is gone.
        this.pending.delete(id);
        reject(
          new NovaError("NOVA_TIMEOUT", `QMP command ${command} got no reply within ${timeoutMs} ms`, {
            details: { command, socketPath: this.socketPath },
          }),
        );
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.socket.write(encodeQmpCommand(command, args, id));
    });
  }

  /** Subscribes to QMP events; returns the unsubscribe function. */
  onEvent(listener: (ev: QmpEvent) => void): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /**
   * Subscribes to the end of the session: `err` is undefined when close() ended it, an
   * error otherwise. Fires immediately (on a microtask) when already closed.
   */
  onClose(listener: (err?: Error) => void): () => void {
    if (this.isClosed) {
      queueMicrotask(() => listener(this.closeError));
      return () => {};
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Ends the session (QEMU keeps running) and waits until the socket is closed. */
  async close(): Promise<void> {
    if (!this.isClosed) {
      this.finish(undefined, new NovaError("NOVA_QMP_PROTOCOL", "QMP connection closed by the client"));
      this.socket.destroy();
    }
    await this.closedPromise;
  }

  private waitGreeting(): Promise<QmpGreeting> {
    return new Promise((resolve, reject) => {
      if (this.isClosed) {
        reject(this.closeError ?? this.protocolError("QMP connection closed before the greeting"));
        return;
      }
      this.greetingResolver = resolve;
      this.onClose((err) => reject(err ?? this.protocolError("QMP connection closed before the greeting")));
    });
  }

  private onData(chunk: Buffer): void {
    let messages: QmpMessage[];
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      this.fail(err as Error);
      this.socket.destroy();
      return;
    }
    for (const message of messages) this.onMessage(message);
  }

  private onMessage(message: QmpMessage): void {
    switch (message.kind) {
      case "greeting": {
        const resolve = this.greetingResolver;
        this.greetingResolver = undefined;
        resolve?.(message.greeting);
        return;
      }
      case "event":
        for (const listener of [...this.eventListeners]) {
          try {
            listener(message.event);
          } catch {
            // A failing listener must not break the session for everyone else.
          }
        }
        return;
      case "return":
      case "error": {
        if (typeof message.id !== "number" || !this.pending.has(message.id)) {
          // QEMU only omits the id when it could not parse our request: a bug on our side
          // that leaves request/reply matching unknowable, so end the session.
          if (message.id === undefined) {
            const detail = message.kind === "error" ? `: ${message.desc}` : "";
            this.fail(this.protocolError(`QMP sent a reply without an id${detail}`));
            this.socket.destroy();
          }
          return; // a reply for a request that already timed out
        }
        const entry = this.pending.get(message.id)!;
        this.pending.delete(message.id);
        clearTimeout(entry.timer);
        if (message.kind === "return") {
          entry.resolve(message.value);
        } else {
          entry.reject(
            new NovaError("NOVA_QEMU_ERROR", `QMP command ${entry.command} failed: ${message.desc}`, {
              details: { command: entry.command, qmpClass: message.qmpClass, desc: message.desc },
            }),
          );
        }
        return;
      }
    }
  }

  private protocolError(message: string, cause?: unknown, errno?: string): NovaError {
    return new NovaError("NOVA_QMP_PROTOCOL", message, {
      details: { socketPath: this.socketPath, ...(errno === undefined ? {} : { errno }) },
      ...(cause === undefined ? {} : { cause }),
    });
  }

  /** Ends the session because of `err` (first cause wins). */
  private fail(err: Error): void {
    if (this.isClosed) return;
    if (
      this.decoder.pending.trim().length > 0 &&
      err instanceof NovaError &&
      err.code === "NOVA_QMP_PROTOCOL"
    ) {
      err.details.partialMessage = this.decoder.pending.slice(0, 200);
    }
    this.finish(err, err);
    this.socket.destroy();
  }

  private finish(reportedError: Error | undefined, pendingError: Error): void {
    this.isClosed = true;
    this.closeError = reportedError;
    for (const [id, entry] of this.pending) {
      this.pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(
        new NovaError("NOVA_QMP_PROTOCOL", `QMP command ${entry.command} failed: ${pendingError.message}`, {
          details: { command: entry.command, socketPath: this.socketPath },
          cause: pendingError,
        }),
      );
    }
    const listeners = [...this.closeListeners];
    this.closeListeners.clear();
    this.eventListeners.clear();
    for (const listener of listeners) {
      try {
        listener(reportedError);
      } catch {
        // Same reasoning as for event listeners.
      }
    }
    if (this.socket.destroyed) {
      this.markClosed();
    } else {
      this.socket.once("close", () => this.markClosed());
    }
  }
}
