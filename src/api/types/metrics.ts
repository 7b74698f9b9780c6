/** Wire types of `POST /v1/metrics/credentials`: a scraper certificate for Prometheus. */
import { type Static, Type } from "@sinclair/typebox";
import { ResourceName } from "./common.js";

/**
 * The organisational unit in every scraper certificate's subject: QEMU's TLS listeners
 * check only the chain to the cluster CA, so their authorisation list (qemu-tls.ts) refuses
 * a subject with this unit.
 */
export const SCRAPER_CERT_UNIT = "novacron-scraper";

/** The most days a scraper certificate may be valid. */
export const SCRAPER_CERT_MAX_DAYS = 825;

/** `POST /v1/metrics/credentials`: the scraper's name and a CSR for a key it keeps. */
export const MetricsCredentialsPost = Type.Object(
  {
    name: ResourceName,
    csr: Type.String({
      maxLength: 8192,
      description: "PEM PKCS#10 request for the scraper's own key (the key never leaves the caller)",
    }),
    validDays: Type.Optional(
      Type.Integer({ minimum: 1, maximum: SCRAPER_CERT_MAX_DAYS, description: "Default 365" }),
    ),
  },
  { additionalProperties: false },
);
export type MetricsCredentialsPost = Static<typeof MetricsCredentialsPost>;

/** The issued scraper certificate and the CA that the server's and the agents' TLS chain to. */
export const MetricsCredentials = Type.Object({
  certificate: Type.String({ description: "PEM; names urn:novacron:scraper, valid for /metrics only" }),
  ca: Type.String({ description: "The cluster CA, PEM" }),
  serial: Type.String(),
  notAfter: Type.String({ format: "date-time" }),
});
export type MetricsCredentials = Static<typeof MetricsCredentials>;

/** A scraper certificate the cluster CA issued, as `GET /v1/metrics/scrapers` lists it. */
export const ScraperCert = Type.Object({
  serial: Type.String(),
  name: Type.String(),
  notAfter: Type.String({ format: "date-time" }),
  issuedAt: Type.String({ format: "date-time" }),
  revokedAt: Type.Union([Type.String({ format: "date-time" }), Type.Null()]),
});
export type ScraperCert = Static<typeof ScraperCert>;

/** `GET /v1/metrics/scrapers`. */
export const ScraperCertList = Type.Object({ scrapers: Type.Array(ScraperCert) });
export type ScraperCertList = Static<typeof ScraperCertList>;
