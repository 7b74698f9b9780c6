/**
 * Routes: `GET /metrics` (Prometheus text; a bearer token holding metrics:read or a
 * scraper certificate of the cluster CA) and `POST /v1/metrics/credentials` (admin: signs
 * a scraper's CSR, so Prometheus can scrape the server and every agent over mutual TLS).
 */
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Registry } from "prom-client";
import { certInfo } from "../../security/pki.js";
import { MetricsCredentials, MetricsCredentialsPost } from "../types/metrics.js";
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
  { guard, registry, scrapers },
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
};
