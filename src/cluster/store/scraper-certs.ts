/**
 * The metrics scrapers' certificates the cluster CA issued, and which are revoked
 * (migration 000011). A revocation is a compare-and-set from not revoked; a revoked
 * certificate stays listed until it expires, so agents keep refusing it until then.
 */
import { NovaError } from "../../lib/errors.js";
import type { Queryable, ReadQueryable } from "./db.js";

/** A scraper certificate as listed. */
export interface ScraperCertRow {
  serial: string;
  name: string;
  notAfter: string;
  issuedAt: string;
  revokedAt: string | null;
}

/** The most revoked serials an agent is told about (each an unexpired certificate). */
export const REVOKED_SCRAPERS_MAX = 10_000;

interface Row {
  serial: string;
  name: string;
  not_after: Date;
  issued_at: Date;
  revoked_at: Date | null;
}

function toRow(r: Row): ScraperCertRow {
  return {
    serial: r.serial,
    name: r.name,
    notAfter: new Date(r.not_after).toISOString(),
    issuedAt: new Date(r.issued_at).toISOString(),
    revokedAt: r.revoked_at ? new Date(r.revoked_at).toISOString() : null,
  };
}

/** Records an issued scraper certificate. */
export async function recordScraperCert(
  q: Queryable,
  cert: { serial: string; name: string; notAfter: Date },
): Promise<void> {
  await q.query("INSERT INTO scraper_certificates (serial, name, not_after) VALUES ($1, $2, $3)", [
    cert.serial,
    cert.name,
    cert.notAfter,
  ]);
}

/** Every recorded scraper certificate, newest first (expired ones too). */
export async function listScraperCerts(q: ReadQueryable): Promise<ScraperCertRow[]> {
  const { rows } = await q.query<Row>(
    "SELECT serial, name, not_after, issued_at, revoked_at FROM scraper_certificates ORDER BY issued_at DESC, serial LIMIT 1000",
  );
  return rows.map(toRow);
}

/**
 * Revokes the certificate `serial`; NOVA_NOT_FOUND when no such certificate was issued,
 * NOVA_CONFLICT when it is revoked already.
 */
export async function revokeScraperCert(q: Queryable, serial: string): Promise<ScraperCertRow> {
  const { rows } = await q.query<Row>(
    `UPDATE scraper_certificates SET revoked_at = now() WHERE serial = $1 AND revoked_at IS NULL
     RETURNING serial, name, not_after, issued_at, revoked_at`,
    [serial],
  );
  if (rows[0]) return toRow(rows[0]);
  const { rows: existing } = await q.query<{ revoked_at: Date | null }>(
    "SELECT revoked_at FROM scraper_certificates WHERE serial = $1",
    [serial],
  );
  if (!existing[0])
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `No scraper certificate with serial ${serial} was issued by this cluster (novacron metrics scrapers lists them).`,
    );
  throw new NovaError("NOVA_CONFLICT", `The scraper certificate ${serial} is revoked already.`, {
    details: { serial, revokedAt: new Date(existing[0].revoked_at!).toISOString() },
  });
}

/** Whether the scraper certificate `serial` is revoked. */
export async function isScraperCertRevoked(q: ReadQueryable, serial: string): Promise<boolean> {
  const { rows } = await q.query<{ one: number }>(
    "SELECT 1 AS one FROM scraper_certificates WHERE serial = $1 AND revoked_at IS NOT NULL",
    [serial],
  );
  return rows.length > 0;
}

/** The serials of revoked scraper certificates that have not expired (what agents must refuse). */
export async function revokedScraperSerials(q: ReadQueryable): Promise<string[]> {
  const { rows } = await q.query<{ serial: string }>(
    `SELECT serial FROM scraper_certificates WHERE revoked_at IS NOT NULL AND not_after > now()
     ORDER BY serial LIMIT ${REVOKED_SCRAPERS_MAX}`,
  );
  return rows.map((r) => r.serial);
}
