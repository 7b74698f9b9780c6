/**
 * The dialing side of ACP (docs/federation.md §10): one session to one peer's listener,
 * channel `acp/1`, one request at a time. Every failure is an answer the planner reads —
 * `unreachable` (link, server or database down; the session is dropped and dialed again
 * next time) or `refused` (the peer said no, with a stable code) — never an exception, so
 * the hand-off's executor decides what a failure means in its state.
 */
import type { AcpRequest } from "../../api/types/acp.js";
import type { PeerRow } from "../../cluster/store/federation.js";
import type { Channel } from "../../dwcp/amst/channel.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { describeError, NovaError } from "../../lib/errors.js";
import { withDeadline } from "../../lib/wait.js";
import { type DialSelf, dialPeer } from "../peer-dial.js";
import { ACP_CHANNEL, readAcpAnswer, sendAcp } from "./acp-wire.js";
import { type AcpMetrics, requestLabel } from "./metrics.js";
import type { PeerAnswer } from "./plan.js";

/** How long one exchange may take (the destination's prepare starts a QEMU). */
export const ACP_REQUEST_TIMEOUT_MS = 60_000;

/** Refusals after which the listener has ended the channel. */
const LINK_ENDING = new Set([
  "NOVA_FED_QUARANTINED",
  "NOVA_FED_PEER_UNKNOWN",
  "NOVA_FED_PROTOCOL",
  "NOVA_UNAUTHENTICATED",
]);

/**
 * Errors by which the peer says it could not decide now (its database is down, a move
 * raced another, it is busy): no refusal, only "ask again", like no answer at all.
 */
const PEER_TRANSIENT = new Set([
  "NOVA_FED_PEER_UNREACHABLE",
  "NOVA_STORE",
  "NOVA_STATE_CHANGED",
  "NOVA_TIMEOUT",
  "NOVA_RATE_LIMITED",
]);

export class AcpClient {
  private link: { session: DwcpSession; channel: Channel } | undefined;
  /** One exchange at a time on the channel. */
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    /** The peer as the store has it now (it may have moved), or undefined once removed. */
    private readonly peer: () => Promise<PeerRow | undefined>,
    private readonly me: DialSelf,
    /** Counts the dials and the answered round trips. */
    private readonly metrics?: AcpMetrics,
  ) {}

  /** Sends `request` and returns the peer's answer, or why there is none. */
  request(request: AcpRequest, timeoutMs = ACP_REQUEST_TIMEOUT_MS): Promise<PeerAnswer> {
    const run = this.queue.then(() => this.exchange(request, timeoutMs));
    this.queue = run.catch(() => {});
    return run;
  }

  /** Drops the session; later requests answer unreachable. */
  close(): void {
    this.closed = true;
    this.drop();
  }

  private drop(): void {
    this.link?.session.destroy();
    this.link = undefined;
  }

  /** One round trip done: the peer answered (a refusal is an answer too). */
  private answered(request: AcpRequest): void {
    this.metrics?.requests.inc({ role: "sent", request: requestLabel(request) });
  }

  private async exchange(request: AcpRequest, timeoutMs: number): Promise<PeerAnswer> {
    if (this.closed) return { kind: "unreachable", message: "the hand-off client is closed" };
    try {
      if (!this.link) {
        const p = await this.peer();
        if (!p) return { kind: "refused", code: "NOVA_FED_PEER_UNKNOWN", message: "the peer was removed" };
        this.link = await dialPeer(p, this.me, ACP_CHANNEL);
        this.metrics?.dials.inc();
      }
      const channel = this.link.channel;
      await sendAcp(channel, request);
      const answer = await withDeadline(
        readAcpAnswer(channel),
        timeoutMs,
        () => new NovaError("NOVA_FED_PEER_UNREACHABLE", `no answer within ${timeoutMs} ms`),
      );
      // An `error` here is the channel ending unanswered (readAcpAnswer throws refusals).
      if (answer.type !== "error") this.answered(request);
      switch (answer.type) {
        case "statement":
          return { kind: "statement", statement: answer.statement };
        case "pending":
        case "unknown":
          return { kind: answer.type };
        case "error":
          // The channel ended; the next request dials again.
          this.drop();
          return PEER_TRANSIENT.has(answer.code)
            ? { kind: "unreachable", message: answer.message }
            : { kind: "refused", code: answer.code, message: answer.message };
      }
    } catch (err) {
      const peerCode = err instanceof NovaError ? (err.details?.peerCode as string | undefined) : undefined;
      // A hand-off's refusal leaves the channel open; the listener's own (quarantine,
      // removal, protocol) ends it.
      if (!peerCode || LINK_ENDING.has(peerCode)) this.drop();
      if (!peerCode) return { kind: "unreachable", message: describeError(err) };
      this.answered(request);
      if (PEER_TRANSIENT.has(peerCode)) return { kind: "unreachable", message: describeError(err) };
      return { kind: "refused", code: peerCode, message: describeError(err) };
    }
  }
}
