/**
 * `novacron metrics credentials --out DIR`: a scraper certificate for Prometheus
 * (`metrics scrapers` lists them, `metrics revoke SERIAL` revokes one). The key
 * is made here and never leaves this machine; the server signs its CSR with the cluster
 * CA (admin only). DIR gets ca.pem, cert.pem and key.pem, as a Prometheus `tls_config`
 * names them (docs/operations.md).
 */
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Command } from "commander";
import {
  type MetricsCredentials,
  SCRAPER_CERT_MAX_DAYS,
  type ScraperCert,
  type ScraperCertList,
} from "../../api/types/metrics.js";
import { NovaError } from "../../lib/errors.js";
import { createCsr, verifyIssued } from "../../security/pki.js";
import { apiFor } from "../context.js";
import { printJson, printTable } from "../output.js";

/** Registers `metrics`. */
export function registerMetricsCommands(program: Command): void {
  const metrics = program.command("metrics").description("Credentials for scraping the cluster's metrics");

  metrics
    .command("credentials")
    .description(
      "Issue a scraper certificate (reads /metrics of the server and every agent, nothing else) into DIR: ca.pem, cert.pem, key.pem",
    )
    .requiredOption("--out <dir>", "directory to write ca.pem, cert.pem and key.pem into (created 0700)")
    .option("--name <name>", "the scraper's name, in its certificate", "prometheus")
    .option("--days <n>", `days the certificate is valid (1-${SCRAPER_CERT_MAX_DAYS})`, "365")
    .action(async (o: { out: string; name: string; days: string }, cmd: Command) => {
      const days = Number(o.days);
      if (!Number.isInteger(days) || days < 1 || days > SCRAPER_CERT_MAX_DAYS)
        throw new NovaError(
          "NOVA_BAD_REQUEST",
          `--days must be a whole number from 1 to ${SCRAPER_CERT_MAX_DAYS}`,
        );
      const { api, json } = await apiFor(cmd);
      const { csrPem, keyPem } = await createCsr(`scraper-${o.name}`);
      const issued = await api.post<MetricsCredentials>("/v1/metrics/credentials", {
        name: o.name,
        csr: csrPem,
        validDays: days,
      });
      // Nothing is written unless the certificate is for this key and from the CA sent with it.
      let matches = false;
      try {
        matches = verifyIssued(issued.certificate, issued.ca, keyPem);
      } catch {
        matches = false;
      }
      if (!matches)
        throw new NovaError(
          "NOVA_TLS_UNTRUSTED",
          "The server's answer is not a certificate for this request's key issued by the CA it sent; nothing was written.",
        );
      await mkdir(o.out, { recursive: true, mode: 0o700 });
      await writeFile(path.join(o.out, "key.pem"), keyPem, { mode: 0o600 });
      await writeFile(path.join(o.out, "cert.pem"), issued.certificate, { mode: 0o644 });
      await writeFile(path.join(o.out, "ca.pem"), issued.ca, { mode: 0o644 });
      if (json) return printJson({ dir: o.out, serial: issued.serial, notAfter: issued.notAfter });
      process.stdout.write(
        `Wrote ${path.join(o.out, "ca.pem")}, cert.pem and key.pem (serial ${issued.serial}, valid until ${issued.notAfter}).\n`,
      );
    });

  metrics
    .command("scrapers")
    .description("List the scraper certificates this cluster issued (revoked ones too), newest first")
    .action(async (_o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      const { scrapers } = await api.get<ScraperCertList>("/v1/metrics/scrapers");
      if (json) return printJson(scrapers);
      printTable(
        ["SERIAL", "NAME", "ISSUED", "VALID UNTIL", "REVOKED"],
        scrapers.map((c) => [c.serial, c.name, c.issuedAt, c.notAfter, c.revokedAt ?? "-"]),
      );
    });

  metrics
    .command("revoke <serial>")
    .description(
      "Revoke a scraper certificate: the server refuses it at once, each agent from its next heartbeat (within seconds)",
    )
    .action(async (serial: string, _o: unknown, cmd: Command) => {
      const { api, json } = await apiFor(cmd);
      if (!/^[0-9a-fA-F]{1,64}$/.test(serial))
        throw new NovaError(
          "NOVA_BAD_REQUEST",
          `${JSON.stringify(serial)} is not a certificate serial (hex digits; novacron metrics scrapers lists them).`,
        );
      const c = await api.post<ScraperCert>(`/v1/metrics/scrapers/${serial.toLowerCase()}/revoke`, {});
      if (json) printJson(c);
      else
        process.stdout.write(
          `Revoked scraper certificate ${c.serial} (${c.name}); agents refuse it from their next heartbeat\n`,
        );
    });
}
