/**
 * The agent's DWCP transport for migrations (docs/migration.md, "Over DWCP"): the agent's
 * DWCP listener on its data address, and the parts it wires together, in src/agent/dwcp/:
 * - control.ts: the hello/go/inv exchange that opens a session, typed and validated;
 * - transport-choice.ts: what "auto" picks, and why (pure);
 * - page-store.ts: the host's page cache, its inventory and the per-VM page histories;
 * - target.ts: the destination side (sessions feeding the destination QEMU);
 * - source.ts: the source side (dial, measure, choose, and the local relay endpoints).
 *
 * Memory pages and disk blocks go through HDE against the same page cache on the
 * destination: its inventory crosses once per session (channel "inv") into a mirror that
 * the memory relay and every NBD connection share (receiver-mirror.ts).
 *
 * A session proves which migration it serves with a token the destination made when it
 * prepared the incoming VM; the server hands it to the source with the endpoints, so only
 * the control plane can point a source at a destination QEMU.
 */
import type { Logger } from "pino";
import { DwcpListener } from "../dwcp/amst/listen.js";
import type { DwcpSession } from "../dwcp/amst/session.js";
import type { LocalEndpoint } from "../migration/dwcp/socket-io.js";
import type { DwcpEndpoint } from "./dwcp/control.js";
import { DwcpPageStore } from "./dwcp/page-store.js";
import { DwcpSource, type OutgoingDwcp } from "./dwcp/source.js";
import { DwcpTarget, type NbdTarget } from "./dwcp/target.js";
import type { TransportDecision } from "./dwcp/transport-choice.js";

export type { DwcpEndpoint } from "./dwcp/control.js";
export type { OutgoingDwcp, OutgoingStats } from "./dwcp/source.js";
export type { TransportDecision } from "./dwcp/transport-choice.js";

/** Options of the agent's DWCP transport. */
export interface AgentDwcpOptions {
  dataDir: string;
  /** The data address to listen on. */
  host: string;
  /** @defaultValue 0 (kernel-chosen; the port travels in the incoming endpoints) */
  port?: number;
  /** Size cap of the host's page cache. @defaultValue 4 GiB */
  cacheBytes?: number;
  log: Logger;
}

/** One per agent. */
export class AgentDwcp {
  private readonly pages: DwcpPageStore;
  private readonly target: DwcpTarget;
  private readonly source: DwcpSource;

  private constructor(
    private readonly o: AgentDwcpOptions,
    private readonly listener: DwcpListener,
  ) {
    this.pages = new DwcpPageStore(o.dataDir, o.cacheBytes, o.log);
    this.target = new DwcpTarget(this.pages, () => this.endpoint);
    this.source = new DwcpSource(this.pages);
    void this.acceptLoop();
  }

  /** Starts listening on the data address. */
  static async start(o: AgentDwcpOptions): Promise<AgentDwcp> {
    const listener = await DwcpListener.listen({ host: o.host, port: o.port ?? 0 });
    return new AgentDwcp(o, listener);
  }

  /** The listener's address. */
  get endpoint(): { host: string; port: number } {
    return { host: this.o.host, port: this.listener.port };
  }

  // ------------------------------------------------------------------ destination ---

  /** Destination: accept a session for `migrationId` that feeds these local endpoints. */
  expectIncoming(migrationId: string, vmId: string, qemu: LocalEndpoint, nbd: NbdTarget): DwcpEndpoint {
    return this.target.expect(migrationId, vmId, qemu, nbd);
  }

  /**
   * Destination, before resuming the VM: the relayed stream must have been written in full
   * and verified, and no disk-mirror relay may have failed. Resolves at once for non-DWCP
   * migrations.
   */
  incomingVerified(migrationId: string, timeoutMs?: number): Promise<void> {
    return this.target.verified(migrationId, timeoutMs);
  }

  /** Destination: the migration ended (either way); drop its session. */
  forgetIncoming(migrationId: string): void {
    this.target.forget(migrationId);
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let session: DwcpSession;
      try {
        session = await this.listener.accept();
      } catch {
        return; // the listener closed
      }
      void this.target.serve(session).catch((err: unknown) => {
        this.o.log.warn({ err: err instanceof Error ? err.message : String(err) }, "DWCP session refused");
        session.destroy();
      });
    }
  }

  // ----------------------------------------------------------------------- source ---

  /** Source: connects to the destination for `migrationId` and decides the transport. */
  startOutgoing(
    migrationId: string,
    vmId: string,
    to: DwcpEndpoint,
    requested: "auto" | "dwcp",
  ): Promise<TransportDecision> {
    return this.source.start(migrationId, vmId, to, requested);
  }

  /** Source: the DWCP side of a migration, if it runs over DWCP. */
  outgoingOf(migrationId: string): OutgoingDwcp | undefined {
    return this.source.of(migrationId);
  }

  /** Source: the migration ended (either way). */
  finishOutgoing(migrationId: string): void {
    this.source.finish(migrationId);
  }

  /** Stops listening and ends every session. */
  async close(): Promise<void> {
    this.source.finishAll();
    this.target.forgetAll();
    await this.listener.close();
    this.pages.close();
  }
}
