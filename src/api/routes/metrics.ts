/**
 * Routes: `GET /metrics` (Prometheus text; a bearer token holding metrics:read or a
 * scraper certificate of the cluster CA), `POST /v1/metrics/credentials` (admin: signs
 * a scraper's CSR, so Prometheus can scrape the server and every agent over mutual TLS),
 * and the issued scraper certificates: `GET /v1/metrics/scrapers`,
 * `POST /v1/metrics/scrapers/:serial/revoke`.
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import type { Registry } from "prom-client";
import { listScraperCerts, recordScraperCert, revokeScraperCert } from "../../cluster/store/scraper-certs.js";
import { certInfo, normaliseSerial } from "../../security/pki.js";
import {
  MetricsCredentials,
  MetricsCredentialsPost,
  ScraperCert,
  ScraperCertList,
} from "../types/metrics.js";
import type { RouteDeps } from "./deps.js";

/** What the metrics routes need beyond the common dependencies. */
export interface MetricsRouteDeps extends RouteDeps {
  registry: Registry;
  /** The cluster CA (PEM) and the signer of scraper certificates. */
  scrapers: { caPem: string; issue(csrPem: string, name: string, validDays: number): Promise<string> };
}

/** Metrics routes. */
export const metricsRoutes: FastifyPluginAsyncTypebox<MetricsRouteDeps> = async (
  app,
  { guard, registry, scrapers, store },
) => {
  app.get("/metrics", { schema: { hide: true }, onRequest: guard("metrics:read") }, async (_req, reply) => {
    reply.header("content-type", registry.contentType);
    return registry.metrics();
  });

  app.post(
    "/v1/metrics/credentials",
    {
      schema: { tags: ["metrics"], body: MetricsCredentialsPost, response: { 201: MetricsCredentials } },
      onRequest: guard("metrics:credentials"),
    },
    async (req, reply) => {
      const certificate = await scrapers.issue(req.body.csr, req.body.name, req.body.validDays ?? 365);
      const info = certInfo(certificate);
      await recordScraperCert(store.db, {
        serial: info.serial,
        name: req.body.name,
        notAfter: info.notAfter,
      });
      req.log.info(
        { scraper: req.body.name, serial: info.serial, by: req.principal?.name },
        "issued a metrics scraper certificate",
      );
      return reply.status(201).send({
        certificate,
        ca: scrapers.caPem,
        serial: info.serial,
        notAfter: info.notAfter.toISOString(),
      });
    },
  );

  app.get(
    "/v1/metrics/scrapers",
    {
      schema: { tags: ["metrics"], response: { 200: ScraperCertList } },
      onRequest: guard("metrics:credentials"),
    },
    async () => ({ scrapers: await listScraperCerts(store.read) }),
  );

  app.post(
    "/v1/metrics/scrapers/:serial/revoke",
    {
      schema: {
        tags: ["metrics"],
        params: Type.Object({ serial: Type.String({ pattern: "^[0-9a-fA-F]{1,64}$" }) }),
        response: { 200: ScraperCert },
      },
      onRequest: guard("metrics:credentials"),
    },
    async (req) => {
      const revoked = await store.write((tx) => revokeScraperCert(tx, normaliseSerial(req.params.serial)));
      req.log.info(
        { serial: revoked.serial, scraper: revoked.name, by: req.principal?.name },
        "revoked a scraper certificate",
      );
      return revoked;
    },
  );
};
