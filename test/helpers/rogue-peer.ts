/**
 * A deliberately misbehaving peer for the Byzantine suite: a real CA, a real server
 * certificate, a real ed25519 key and a real DWCP listener with mutual TLS that speaks
 * ASS, but answers each pull with whatever batch the test scripts, signed or forged as
 * it likes. It peers with a real NovaCron server through the real redeem route.
 */
import { randomUUID } from "node:crypto";
import type { AssBatch, ClusterCard, RedeemResponse } from "../../src/api/types/federation.js";
import { FEDERATION_PROTOCOL } from "../../src/api/types/federation.js";
import { DwcpListener } from "../../src/dwcp/amst/listen.js";
import type { DwcpSession } from "../../src/dwcp/amst/session.js";
import { readHello, readPull, send } from "../../src/federation/ass-wire.js";
import { parsePeeringToken } from "../../src/federation/peering-token.js";
import {
  newSigningIdentity,
  privateKeyOf,
  type RecordContent,
  type SignedRecord,
  signRecord,
} from "../../src/federation/records.js";
import { createCa, issueWithNewKey, SERVER_IDENTITY } from "../../src/security/pki.js";
import { clusterFetch, fetchPresentedCa } from "../../src/security/tls-client.js";

/** A rogue cluster. */
export class RoguePeer {
  readonly id = randomUUID();
  private readonly signing = newSigningIdentity();
  private readonly script: SignedRecord[][] = [];
  private sessions = new Set<DwcpSession>();
  /** Highest version the rogue has claimed, for the batches' vectors. */
  private claimed = 0;
  pulls = 0;

  private constructor(
    readonly name: string,
    private readonly tls: { caPem: string; certPem: string; keyPem: string },
    private readonly listener: DwcpListener,
  ) {
    void this.acceptLoop();
  }

  static async start(name: string, victimCaPem: string): Promise<RoguePeer> {
    const ca = await createCa(`${name} CA`);
    const server = await issueWithNewKey(ca, {
      commonName: name,
      uris: [SERVER_IDENTITY],
      names: ["127.0.0.1"],
    });
    const listener = await DwcpListener.listen({
      host: "127.0.0.1",
      port: 0,
      tls: { cert: server.certPem + ca.certPem, key: server.keyPem, ca: [victimCaPem], requestCert: true },
      versions: [3],
    });
    return new RoguePeer(
      name,
      { caPem: ca.certPem, certPem: server.certPem, keyPem: server.keyPem },
      listener,
    );
  }

  /** The card it presents when peering. */
  card(): ClusterCard {
    return {
      id: this.id,
      name: this.name,
      protocol: FEDERATION_PROTOCOL,
      apiUrl: "https://127.0.0.1:1",
      federation: { host: "127.0.0.1", port: this.listener.port },
      caPem: this.tls.caPem,
      signingPublicKey: this.signing.publicKey,
    };
  }

  /** Redeems a token of the victim's, as a real cluster would. */
  async redeem(token: string): Promise<RedeemResponse> {
    const t = parsePeeringToken(token);
    const caPem = await fetchPresentedCa(t.apiUrl);
    const fetch = clusterFetch(
      { caPem, certPem: this.tls.certPem, keyPem: this.tls.keyPem },
      { role: "server" },
    );
    const res = await fetch(`${t.apiUrl}/v1/federation/redeem`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secret: t.secret, cluster: this.card(), takenNames: [this.name] }),
    });
    if (!res.ok) throw new Error(`redeem refused: ${res.status} ${await res.text()}`);
    return (await res.json()) as RedeemResponse;
  }

  /** Signs a record of its own with its real key. */
  sign(over: Partial<RecordContent> & Pick<RecordContent, "kind" | "id" | "version">): SignedRecord {
    return signRecord(
      {
        origin: this.id,
        deleted: false,
        body: { name: over.id, state: "running", host: null, vcpus: 1, memoryMiB: 64, image: "img" },
        issuedAt: new Date().toISOString(),
        ...over,
      },
      privateKeyOf(this.signing),
    );
  }

  /** Queues a batch to answer the next pull with. */
  serve(records: SignedRecord[]): void {
    this.script.push(records);
  }

  /** Whether every scripted batch was handed out. */
  get drained(): boolean {
    return this.script.length === 0;
  }

  async close(): Promise<void> {
    for (const s of this.sessions) s.destroy();
    await this.listener.close();
  }

  private async acceptLoop(): Promise<void> {
    for (;;) {
      let session: DwcpSession;
      try {
        session = await this.listener.accept();
      } catch {
        return;
      }
      this.sessions.add(session);
      void this.serveSession(session)
        .catch(() => {})
        .finally(() => {
          this.sessions.delete(session);
          session.destroy();
        });
    }
  }

  private async serveSession(session: DwcpSession): Promise<void> {
    const ch = await session.accept();
    await readHello(ch);
    await send(ch, { type: "hello", protocol: FEDERATION_PROTOCOL, cluster: this.id, name: this.name });
    for (;;) {
      const pull = await readPull(ch);
      if (!pull) return;
      this.pulls++;
      const records = this.script.shift();
      if (!records) await new Promise((r) => setTimeout(r, Math.min(pull.waitMs, 200)));
      for (const r of records ?? []) this.claimed = Math.max(this.claimed, r.version);
      const batch: AssBatch = {
        type: "batch",
        vector: { [this.id]: this.claimed },
        seq: this.claimed,
        records: records ?? [],
        truncated: false,
        now: new Date().toISOString(),
      };
      await send(ch, batch);
    }
  }
}
