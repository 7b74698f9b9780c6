/**
 * The agent's link to its server over mutual TLS. On first start it joins: it checks that
 * the server's CA is the one its join token names, sends a CSR for a key it made itself
 * with the token, and keeps the host certificate it gets back (agent-identity.ts). Then it
 * heartbeats with that certificate every interval and at once after any change. It renews
 * the certificate when a third of its life is left, and re-registers with it when the
 * server no longer knows the host's registration, or when its saved identity predates the
 * cluster id in the registration reply (the id its VMs' fencing tokens name: agent/fence.ts).
 * Survives server restarts (keeps retrying, logs once per outage). Given several URLs (the
 * replicas of one control plane, docs/operations.md "Running replicas"), it calls the one
 * that answered last and moves to the next when that one is unreachable or failing.
 */

import { Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import type { Logger } from "pino";
import {
  type AgentHeartbeatPost,
  AgentHeartbeatReply,
  type AgentRegisterPost,
  type AgentRegisterResponse,
} from "../api/types/agent.js";
import { ERROR_CODES, type ErrorCode } from "../lib/error-codes.js";
import { describeError, NovaError } from "../lib/errors.js";
import { readBoundedJson, readTextPrefix } from "../lib/json-response.js";
import { parseServerUrlList } from "../lib/server-url-list.js";
import { WakeableLoop } from "../lib/wakeable-loop.js";
import { parseJoinToken } from "../security/join-token.js";
import { certInfo, createCsr } from "../security/pki.js";
import { type ClusterFetch, clusterFetch, fetchPresentedCa } from "../security/tls-client.js";
import { type AgentIdentity, AgentIdentityFiles, shouldRenew } from "./agent-identity.js";
import { monoNowMs } from "./ha-lease.js";
import { type HaReply, parseHaReply } from "./ha-reply.js";

/** Link options. */
export interface ServerLinkOptions {
  /** The server, or the replicas of its control plane, in the order to try them (parseServerUrls). */
  serverUrls: readonly string[];
  /** Needed only to join the first time (or after the host was removed). */
  joinToken?: string;
  dataDir: string;
  heartbeatIntervalMs: number;
  registration: () => Promise<Omit<AgentRegisterPost, "csr">>;
  heartbeat: () => Promise<Omit<AgentHeartbeatPost, "agentUrl">>;
  agentUrl: string;
  log: Logger;
  /** Called with each new identity (first join, renewal), before it is used. */
  onIdentity?: (identity: AgentIdentity) => void;
  /** Called with the revoked scraper certificates' serials each heartbeat reply names. */
  onRevokedScrapers?: (serials: string[]) => Promise<void> | void;
  /**
   * Called with each heartbeat reply's HA part (lease, storage pools, copies to release)
   * and the CLOCK_MONOTONIC ms the heartbeat was sent at, from which its lease counts.
   */
  onHa?: (reply: HaReply, sentAtMonoMs: number) => Promise<void> | void;
}

/** `--server`'s value: one https URL or several (the replicas of one control plane). */
export function parseServerUrls(text: string): string[] {
  return parseServerUrlList(text, { allowHttp: false });
}

/** The reply's non-HA part, checked as before (the HA part is parsed by ha-reply.ts). */
const ScrapersReply = Type.Pick(AgentHeartbeatReply, ["ok", "revokedScrapers"]);

/** A heartbeat reply's byte cap: 10,000 revoked serials of 64 hex digits fit. */
const HEARTBEAT_REPLY_LIMIT_BYTES = 1024 * 1024;

/** Registration and heartbeats. */
export class ServerLink {
  private id: AgentIdentity | undefined;
  private fetchServer: ClusterFetch | undefined;
  private readonly heartbeats: WakeableLoop;
  private readonly files: AgentIdentityFiles;
  private stopped = false;
  private outage = false;
  /** Re-registered once already to learn the cluster id (an older server may not send it). */
  private askedClusterId = false;
  /** The index in serverUrls of the server that answered last. */
  private current = 0;

  constructor(private readonly o: ServerLinkOptions) {
    this.files = new AgentIdentityFiles(o.dataDir);
    this.heartbeats = new WakeableLoop({
      pass: () => this.sendHeartbeat(),
      intervalMs: o.heartbeatIntervalMs,
      // sendHeartbeat handles its own failures (logged once per outage).
      onError: (err) => o.log.warn({ err: describeError(err) }, "heartbeat failed"),
    });
  }

  /** The host's identity, once joined. */
  get identity(): AgentIdentity | undefined {
    return this.id;
  }

  /** The host id, once joined. */
  get hostId(): string | undefined {
    return this.id?.hostId;
  }

  /** Loads the saved identity or joins; then starts heartbeating. Retries until it works. */
  async start(signal?: AbortSignal): Promise<void> {
    const saved = await this.files.load(this.o.serverUrls);
    if (saved) this.adopt(saved);
    else await this.registerWithRetry(signal);
    this.beat();
  }

  /**
   * Sends a heartbeat now (coalesced with one in flight), then every interval. A change
   * reported while start() is still registering already starts the heartbeats.
   */
  beat(): void {
    if (this.stopped) return;
    if (this.heartbeats.running) this.heartbeats.wake();
    else this.heartbeats.start();
  }

  /** Stops heartbeating. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.heartbeats.stop();
  }

  /** The server this link calls now. */
  get serverUrl(): string {
    return this.o.serverUrls[this.current]!;
  }

  /**
   * Calls the current server, then each next one in turn while a server is unreachable or
   * answers 5xx; the one that answers becomes current. The last failure is thrown.
   */
  private async failover(call: (url: string) => Promise<Response>): Promise<Response> {
    const urls = this.o.serverUrls;
    let last: unknown;
    for (let i = 0; i < urls.length; i++) {
      const index = (this.current + i) % urls.length;
      try {
        const res = await call(urls[index]!);
        if (res.status >= 500 && i < urls.length - 1) {
          await res.body?.cancel();
          last = new Error(`${urls[index]} answered HTTP ${res.status}`);
          continue;
        }
        if (index !== this.current) {
          this.o.log.info({ from: this.serverUrl, to: urls[index] }, "switched to another server replica");
          this.current = index;
        }
        return res;
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  private adopt(identity: AgentIdentity): void {
    this.o.onIdentity?.(identity);
    this.id = identity;
    this.fetchServer = clusterFetch(
      { caPem: identity.caPem, certPem: identity.certPem, keyPem: identity.keyPem },
      { role: "server" },
    );
  }

  private async sendHeartbeat(): Promise<void> {
    try {
      if (!this.id) await this.register();
      if (shouldRenew(this.id!.certPem)) {
        this.o.log.info({ notAfter: certInfo(this.id!.certPem).notAfter }, "renewing the host certificate");
        await this.register();
      } else if (!this.id!.clusterId && !this.askedClusterId) {
        this.askedClusterId = true;
        // Registered before servers said their cluster's id: the one sound way to learn it
        // is the server's own reply, and re-registering (a renewal) gives it.
        this.o.log.info("registering again to learn the cluster's id");
        await this.register();
      }
      const body: AgentHeartbeatPost = { agentUrl: this.o.agentUrl, ...(await this.o.heartbeat()) };
      // The lease this heartbeat renews counts from now, before the server saw it.
      const sentAtMonoMs = monoNowMs();
      const res = await this.post("/v1/agent/heartbeat", body);
      if (res.status === 401) {
        await res.body?.cancel();
        this.o.log.warn("the server does not accept this host's certificate; registering again");
        await this.register();
        // Beat again right after this pass, with the new certificate.
        this.heartbeats.wake();
        return;
      }
      if (!res.ok) throw await refusal(res, "heartbeat refused");
      const reply = await readBoundedJson(res, { peer: "the server", maxBytes: HEARTBEAT_REPLY_LIMIT_BYTES });
      await this.o.onHa?.(parseHaReply(reply), sentAtMonoMs);
      const scrapers = typeof reply === "object" && reply !== null ? { ...reply } : reply;
      if (scrapers && typeof scrapers === "object") {
        for (const k of ["lease", "storagePools", "release"]) delete (scrapers as Record<string, unknown>)[k];
      }
      if (Value.Check(ScrapersReply, scrapers) && scrapers.revokedScrapers)
        await this.o.onRevokedScrapers?.(scrapers.revokedScrapers);
      if (this.outage) this.o.log.info("server reachable again");
      this.outage = false;
    } catch (err) {
      if (!this.outage) this.o.log.warn({ err: describeError(err) }, "heartbeat failed; will keep trying");
      this.outage = true;
    }
  }

  private async registerWithRetry(signal?: AbortSignal): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        await this.register();
        return;
      } catch (err) {
        // The server refusing this agent (bad join token, unsupported QEMU, wrong CA, …) is
        // final; an unreachable or failing server is retried.
        if (err instanceof NovaError && !err.retryable) throw err;
        if (attempt === 1)
          this.o.log.warn({ err: describeError(err) }, "cannot reach the server to register; retrying");
        await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
      }
    }
  }

  /**
   * Registers with a fresh key: with the current certificate when there is one (renewal,
   * re-registration), else with the join token (first join).
   */
  private async register(): Promise<void> {
    const reg = await this.o.registration();
    const { csrPem, keyPem } = await createCsr(reg.name);
    const body: AgentRegisterPost = { ...reg, csr: csrPem };
    let res: Response;
    let caPem: string;
    if (this.id) {
      caPem = this.id.caPem;
      res = await this.post("/v1/agent/register", body);
      if (res.status === 401 && this.o.joinToken) {
        await res.body?.cancel();
        this.o.log.warn(
          "the server no longer accepts this host's certificate; joining again with the join token",
        );
        this.id = undefined;
        return this.register();
      }
    } else {
      if (!this.o.joinToken) {
        throw new NovaError(
          "NOVA_CONFIG",
          `This agent has not joined ${this.o.serverUrls.join(", ")} yet (or was removed from it). Make a join token on the server (novacron host join-token ${reg.name}) and start the agent with --join-token.`,
        );
      }
      const token = this.o.joinToken;
      let trusted = "";
      res = await this.failover(async (url) => {
        // Each replica's CA is checked against the token: they all present the cluster's.
        trusted = await this.trustedCa(url, token);
        return clusterFetch({ caPem: trusted }, { role: "server" })(`${url}/v1/agent/register`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token.trim()}` },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(30_000),
        });
      });
      caPem = trusted;
    }
    if (res.status === 401 || res.status === 403) {
      throw await refusal(res, "registration refused", true);
    }
    if (!res.ok) throw await refusal(res, "registration refused");
    const reply = (await readBoundedJson(res, {
      peer: `server ${this.serverUrl}`,
      maxBytes: 64 * 1024,
    })) as AgentRegisterResponse | undefined;
    if (!reply?.certificate)
      throw new Error(`registration reply from ${this.serverUrl} is not a registration`);
    const previous = this.id?.clusterId;
    if (previous && reply.clusterId && previous !== reply.clusterId) {
      // A server whose database was replaced: VMs whose tokens name the old id stay fenced.
      this.o.log.warn(
        { previous, clusterId: reply.clusterId },
        "the server's cluster id changed; VMs held under the old one will not be started",
      );
    }
    const identity: AgentIdentity = {
      serverUrl: this.serverUrl,
      hostId: reply.hostId,
      ...(reply.clusterId ? { clusterId: reply.clusterId } : {}),
      caPem,
      certPem: reply.certificate,
      keyPem,
    };
    await this.files.save(identity);
    this.adopt(identity);
    this.o.log.info(
      { hostId: reply.hostId, clusterId: reply.clusterId, notAfter: certInfo(reply.certificate).notAfter },
      "registered with the server; host certificate saved",
    );
  }

  /**
   * The server's CA, read off its TLS handshake and accepted only if its fingerprint is the
   * one in the join token: a man in the middle cannot present the cluster's CA.
   */
  private async trustedCa(url: string, joinToken: string): Promise<string> {
    const { caFingerprint } = parseJoinToken(joinToken);
    let presented: string;
    try {
      presented = await fetchPresentedCa(url);
    } catch (err) {
      throw new Error(`cannot read the TLS certificate of ${url}: ${describeError(err)}`);
    }
    const got = certInfo(presented).fingerprint;
    if (got !== caFingerprint) {
      throw new NovaError(
        "NOVA_TLS_UNTRUSTED",
        `The server at ${url} presents CA ${got}, but the join token names ${caFingerprint}. This is not the server the token was made on (or someone is in between). Check the URL, or make a token on the right server.`,
        { details: { presented: got, expected: caFingerprint } },
      );
    }
    return presented;
  }

  private post(route: string, body: unknown): Promise<Response> {
    return this.failover((url) =>
      this.fetchServer!(`${url}${route}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(10_000),
      }),
    );
  }
}

/**
 * The error for a refused call: the server's own NovaError (code and message) for a 4xx
 * with a NovaCron error body, so a final refusal such as NOVA_QEMU_UNSUPPORTED reaches the
 * user as the server said it; a plain Error (retried) otherwise.
 */
async function refusal(res: Response, what: string, final = false): Promise<Error> {
  // A prefix, not a bounded read that throws: an oversized refusal must stay retryable.
  const { text } = await readTextPrefix(res, 64 * 1024);
  if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
    try {
      const body = JSON.parse(text) as { error?: { code?: string; message?: string; details?: unknown } };
      const code = body.error?.code;
      if (code && Object.hasOwn(ERROR_CODES, code) && typeof body.error?.message === "string") {
        const details = body.error.details;
        return new NovaError(code as ErrorCode, `The server refused this agent: ${body.error.message}`, {
          details:
            typeof details === "object" && details !== null ? (details as Record<string, unknown>) : {},
        });
      }
    } catch {
      // not JSON: fall through
    }
  }
  if (final) return new NovaError("NOVA_UNAUTHENTICATED", `${what}: HTTP ${res.status} ${text}`);
  return new Error(`${what}: HTTP ${res.status} ${text}`);
}
