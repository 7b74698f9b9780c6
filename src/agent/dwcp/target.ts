/**
 * The destination side of migrations over DWCP: the migrations this host expects (each
 * with the token it issued when it prepared the incoming VM), and for each accepted
 * session the relays that feed the destination QEMU: the memory stream through
 * MigrationRelayTarget, the block mirror's NBD connections through NbdRelayTarget, both
 * deduping against the host's page store. The control exchange is in control.ts.
 */
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import type { PageHistory } from "../../dwcp/hde/history.js";
import { NovaError } from "../../lib/errors.js";
import { ChannelRouter } from "../../migration/dwcp/channel-router.js";
import { NbdRelayTarget } from "../../migration/dwcp/nbd-relay.js";
import { MigrationRelayTarget } from "../../migration/dwcp/relay-target.js";
import type { LocalEndpoint } from "../../migration/dwcp/socket-io.js";
import {
  CONTROL_CHANNELS,
  type DwcpEndpoint,
  decodeHelloRequest,
  encodeHelloAnswer,
  OFFER_HELLO_PREFIX,
} from "./control.js";
import type { DwcpPageStore } from "./page-store.js";

/** How long a connected peer has to say which migration it serves. */
const HELLO_TIMEOUT_MS = 10_000;

/**
 * Where the relay meets the destination's NBD export: an endpoint, or a function that
 * provides it once the source chose DWCP (the agent moves the export to loopback then).
 */
export type NbdTarget = LocalEndpoint | (() => Promise<LocalEndpoint>);

interface Incoming {
  token: Buffer;
  /** Another cluster's CA whose host certificates may serve this migration (peer-trust.ts). */
  peerCaPem: string | undefined;
  vmId: string;
  qemu: LocalEndpoint;
  nbd: NbdTarget;
  session: DwcpSession | null;
  relay: MigrationRelayTarget | null;
  nbdRelay: NbdRelayTarget | null;
  history: PageHistory | null;
  diskHistory: PageHistory | null;
}

/** Serves a session whose hello named an image offer (image-offer.ts), with the token it gave. */
export type OfferSessions = (
  offerId: string,
  token: Buffer,
  session: DwcpSession,
  router: ChannelRouter,
  hello: Channel,
) => Promise<void>;

/**
 * What the agent records of an incoming relay's course (vm.json), so that after its own
 * restart it knows whether a stream it can no longer check was checked: "started" once
 * the source chose DWCP, "verified" once the whole memory stream matched end to end.
 */
export type IncomingRelayMark = (migrationId: string, vmId: string, mark: "started" | "verified") => void;

/** One per agent. */
export class DwcpTarget {
  private readonly incoming = new Map<string, Incoming>();
  private mark: IncomingRelayMark = () => {};

  constructor(
    private readonly pages: DwcpPageStore,
    /** The agent's DWCP listener address, handed to sources in the endpoints. */
    private readonly listenerEndpoint: () => { host: string; port: number; name?: string },
    /**
     * Judges a session's client certificate for the migration its hello named (with the
     * migration's peer CA, if any): a reason refuses it.
     */
    private readonly authorize: (session: DwcpSession, peerCaPem: string | undefined) => string | undefined,
    /** Sessions that ask for an image offer rather than a migration. */
    private readonly offers: OfferSessions,
  ) {}

  /** Where the relays' course is recorded (IncomingRelayMark). */
  onRelayMark(mark: IncomingRelayMark): void {
    this.mark = mark;
  }

  /**
   * Accept a session for `migrationId` that feeds these local endpoints; with `peerCaPem`
   * its client certificate may also be a host certificate of that CA.
   */
  expect(
    migrationId: string,
    vmId: string,
    qemu: LocalEndpoint,
    nbd: NbdTarget,
    peerCaPem?: string,
  ): DwcpEndpoint {
    const existing = this.incoming.get(migrationId);
    const token = existing?.token ?? randomBytes(24);
    if (!existing)
      this.incoming.set(migrationId, {
        token,
        peerCaPem,
        vmId,
        qemu,
        nbd,
        session: null,
        relay: null,
        nbdRelay: null,
        history: null,
        diskHistory: null,
      });
    return { ...this.listenerEndpoint(), token: token.toString("base64url") };
  }

  /**
   * Before resuming the VM: the relayed stream must have been written in full and verified
   * (SHA-256 against the source's), and no disk-mirror relay may have failed. Resolves at
   * once for non-DWCP migrations.
   */
  async verified(migrationId: string, timeoutMs = 30_000): Promise<void> {
    const inc = this.incoming.get(migrationId);
    if (!inc?.relay) return;
    let timer: NodeJS.Timeout | undefined;
    try {
      // The disk's connections are finished by now (the mirror ended before the switch-over
      // went on); each counts as done once verified end to end and once the export answered
      // every flush the source had answered for it (nbd-reply-gate.ts).
      await Promise.race([
        Promise.all([inc.relay.done, inc.nbdRelay?.idle()]),
        new Promise((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new NovaError(
                  "NOVA_TIMEOUT",
                  "the DWCP relay did not confirm the migration stream and the disk's writes in time",
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
      // A disk relay that failed (an error answer, its end-to-end check) means the disk
      // cannot be trusted.
      const diskError = inc.nbdRelay?.error;
      if (diskError)
        throw new NovaError(
          "NOVA_MIGRATION_RELAY",
          `the disk mirror's DWCP relay failed: ${diskError.message}`,
        );
      const files = this.pages.historyFiles(inc.vmId);
      inc.history?.save(files.memory);
      inc.diskHistory?.save(files.disk);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Why this migration's relay can no longer deliver the VM, once it cannot: the memory
   * stream or a disk connection failed (a session that lost its connections for good,
   * a check that did not match). Its QEMU may still have loaded a whole-looking stream,
   * but without the end-to-end check it is not trusted to run.
   */
  failure(migrationId: string): string | undefined {
    const inc = this.incoming.get(migrationId);
    return (inc?.relay?.error ?? inc?.nbdRelay?.error)?.message;
  }

  /** Whether a relay of this agent feeds `migrationId`'s QEMU. */
  hasRelay(migrationId: string): boolean {
    return this.incoming.get(migrationId)?.relay != null;
  }

  /** The migration ended (either way); drop its session. */
  forget(migrationId: string): void {
    const inc = this.incoming.get(migrationId);
    if (!inc) return;
    this.incoming.delete(migrationId);
    inc.session?.destroy();
  }

  /** Every expected migration. */
  forgetAll(): void {
    for (const id of [...this.incoming.keys()]) this.forget(id);
  }

  /** Serves one accepted session; throws (and the caller ends it) when refused. */
  async serve(session: DwcpSession): Promise<void> {
    const router = new ChannelRouter(session);
    // A peer that connects but never says which migration it serves is dropped.
    let timer: NodeJS.Timeout | undefined;
    const helloTimeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NovaError("NOVA_TIMEOUT", "DWCP peer sent no hello within 10 s")),
        HELLO_TIMEOUT_MS,
      );
    });
    const hello = await Promise.race([router.take(CONTROL_CHANNELS.hello), helloTimeout]);
    const msg = await Promise.race([hello.read(), helloTimeout]).finally(() => clearTimeout(timer));
    let migrationId: string | undefined;
    let given = Buffer.alloc(0);
    let malformed: unknown;
    try {
      const req = decodeHelloRequest(msg);
      migrationId = req.migrationId;
      given = Buffer.from(req.token, "base64url");
    } catch (err) {
      // The peer gets the same answer as for a wrong token; the log gets the reason.
      malformed = err;
    }
    if (migrationId?.startsWith(OFFER_HELLO_PREFIX))
      return this.offers(migrationId.slice(OFFER_HELLO_PREFIX.length), given, session, router, hello);
    const inc = migrationId === undefined ? undefined : this.incoming.get(migrationId);
    if (!inc || given.length !== inc.token.length || !timingSafeEqual(given, inc.token)) {
      await refuse(hello, "unknown migration or bad token");
      throw (
        malformed ??
        new NovaError("NOVA_FORBIDDEN", `DWCP session for unknown migration ${migrationId ?? "?"}`)
      );
    }
    // The token binds the session to the migration; the certificate must fit the
    // migration too (another cluster's CA only for the migration prepared with it).
    const denied = this.authorize(session, inc.peerCaPem);
    if (denied) {
      await refuse(hello, "the client certificate is not accepted for this migration");
      throw new NovaError("NOVA_FORBIDDEN", `DWCP session for migration ${migrationId} refused: ${denied}`);
    }
    if (inc.session && inc.relay) {
      // Data may already have reached the destination QEMU through the first session.
      await refuse(hello, "this migration already has a session");
      throw new NovaError("NOVA_CONFLICT", `DWCP session for migration ${migrationId} already running`);
    }
    // An earlier session that never said "go" (the source measured the path, then chose
    // QEMU's transport, or restarted) carried nothing; a peer's session outlives its
    // connections for a while, so the newer one replaces it instead of being refused.
    inc.session?.destroy();
    inc.session = session;
    await hello.send(encodeHelloAnswer({ ok: true }));
    await hello.end();
    // The source measures the path first; only if it chose DWCP does it open "go". A
    // session that ends instead (QEMU's transport chosen) leaves nothing behind here.
    try {
      await router.take(CONTROL_CHANNELS.go);
    } catch {
      if (inc.session === session) inc.session = null;
      return;
    }
    // The export may have to move first (dwcp-transport.ts); the relays connect to it when
    // the mirror's first connection arrives, so the inventory, which the source waits for,
    // need not wait for the move.
    const nbd = typeof inc.nbd === "function" ? inc.nbd() : Promise.resolve(inc.nbd);
    nbd.catch(() => undefined);
    ({ memory: inc.history, disk: inc.diskHistory } = this.pages.loadHistories(inc.vmId));
    inc.nbdRelay = new NbdRelayTarget({
      router,
      label: "nbd",
      target: nbd,
      cache: this.pages.current,
      history: inc.diskHistory,
      announce: false,
    });
    inc.relay = new MigrationRelayTarget({
      router,
      label: "mig",
      qemu: inc.qemu,
      cache: this.pages.current,
      history: inc.history,
      announce: false,
    });
    this.mark(migrationId!, inc.vmId, "started");
    inc.relay.done.then(
      () => this.mark(migrationId!, inc.vmId, "verified"),
      () => undefined,
    );
    // One inventory for the whole session; the relays' own channels announce none.
    await this.pages.sendInventory(await router.take(CONTROL_CHANNELS.inventory));
    this.pages.resetIfDamagedAfter(inc.relay.done);
  }
}

/** Answers a hello with a refusal and ends the channel. */
export async function refuse(hello: Channel, error: string): Promise<void> {
  await hello.send(encodeHelloAnswer({ ok: false, error }));
  await hello.end().catch(() => undefined);
}
