/**
 * Whom a destination's DWCP listener lets in for a migration from another cluster
 * (docs/migration.md, "Across clusters"). Inside a cluster every session's client
 * certificate chains to the cluster CA, and the session's token binds it to one migration.
 * A migration from cluster S is prepared with S's CA (`peerCaPem`): the listener then also
 * trusts that CA at the TLS layer while the migration is prepared, and the session for
 * that migration — and only that one — may present a host certificate S's CA issued.
 *
 * Pure parts: the per-migration list of trusted peer CAs (bounded) and the judgment of a
 * session's client certificate once its hello named the migration. AgentDwcp feeds the
 * list to the listener and asks the judgment of every session.
 */
import { X509Certificate } from "node:crypto";
import { describeError, NovaError } from "../../lib/errors.js";
import { identityOf, urisOf, verifyIssued } from "../../security/pki.js";

/**
 * Most distinct peer CAs the listener trusts at once. Each is one more anchor a TLS
 * handshake is checked against; the server's per-host migration limit keeps the number
 * of such migrations small anyway, so more than this means something is wrong.
 */
export const MAX_PEER_CAS = 8;

/** Checks `pem` is one CA certificate; returns it normalised (trimmed, one final newline). */
export function parsePeerCa(pem: string): string {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem);
  } catch (err) {
    throw new NovaError("NOVA_BAD_REQUEST", `peerCaPem is not a PEM certificate: ${describeError(err)}`);
  }
  if (!cert.ca)
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `peerCaPem is not a CA certificate (${cert.subject.replace(/\n/g, ", ")}): give the source cluster's CA`,
    );
  return `${pem.trim()}\n`;
}

/** The peer CAs trusted for the migrations a destination has prepared, by migration. */
export class PeerCaTrust {
  private readonly byMigration = new Map<string, string>();

  /**
   * Trusts `caPem` for `migrationId` (idempotent). Refused (NOVA_NO_CAPACITY, nothing
   * changed) when it would make more than MAX_PEER_CAS distinct CAs.
   */
  add(migrationId: string, caPem: string): void {
    const after = new Map(this.byMigration).set(migrationId, caPem);
    if (new Set(after.values()).size > MAX_PEER_CAS)
      throw new NovaError(
        "NOVA_NO_CAPACITY",
        `This host already trusts ${MAX_PEER_CAS} other clusters' CAs for incoming migrations; retry once one of those migrations ended`,
        { details: { limit: MAX_PEER_CAS } },
      );
    this.byMigration.set(migrationId, caPem);
  }

  /** Stops trusting the CA for `migrationId`; true when the distinct list changed. */
  remove(migrationId: string): boolean {
    const ca = this.byMigration.get(migrationId);
    if (ca === undefined) return false;
    this.byMigration.delete(migrationId);
    return !this.list().includes(ca);
  }

  /** The peer CA trusted for `migrationId`, if any. */
  of(migrationId: string): string | undefined {
    return this.byMigration.get(migrationId);
  }

  /** The distinct peer CAs trusted now. */
  list(): string[] {
    return [...new Set(this.byMigration.values())];
  }
}

/** A session's client certificate, as TLS presented it. */
export interface SessionCert {
  pem: string;
  /** Node's subjectaltname text ("URI:…, DNS:…"). */
  subjectaltname?: string | undefined;
}

/** Whether a session's certificate may serve the migration it named. */
export type SessionCertVerdict = { ok: true; via: "own-ca" | "peer-ca" } | { ok: false; reason: string };

/**
 * Judges the client certificate of a session that named a migration (after TLS verified
 * its chain against the listener's whole trust list): this cluster's CA as ever, or the
 * migration's own peer CA with a host identity. A peer CA trusted for another migration
 * does not count.
 */
export function judgeSessionCert(o: {
  cert: SessionCert | null;
  ownCaPem: string;
  /** The CA the migration was prepared with (another cluster's), if any. */
  peerCaPem: string | undefined;
}): SessionCertVerdict {
  if (!o.cert) return { ok: false, reason: "no client certificate" };
  if (verifyIssued(o.cert.pem, o.ownCaPem)) {
    // The cluster CA also signs metrics scrapers' certificates, which read /metrics only.
    if (identityOf(urisOf(o.cert.subjectaltname)).role === "scraper")
      return { ok: false, reason: "a metrics scraper's certificate opens no DWCP session" };
    return { ok: true, via: "own-ca" };
  }
  if (o.peerCaPem === undefined || !verifyIssued(o.cert.pem, o.peerCaPem))
    return {
      ok: false,
      reason:
        o.peerCaPem === undefined
          ? "the client certificate is not from this cluster's CA, and this migration trusts no other"
          : "the client certificate is neither from this cluster's CA nor from the CA this migration trusts",
    };
  if (identityOf(urisOf(o.cert.subjectaltname)).role !== "host")
    return { ok: false, reason: "the source cluster's certificate is not a host certificate" };
  return { ok: true, via: "peer-ca" };
}
