/**
 * The certificate expiry gauge every process exposes (`novacron_certificate_expiry_timestamp_seconds`):
 * when each certificate it holds stops being valid, read from the PEM at scrape time so a
 * renewed certificate shows at once. The alert rules compare it with `time()`.
 */
import { X509Certificate } from "node:crypto";
import { Gauge, type Registry } from "prom-client";

/** A certificate a process holds, under a bounded label (`ca`, `server`, `host`). */
export interface HeldCertificate {
  certificate: "ca" | "server" | "host";
  pem: string;
}

/** Registers the gauge; `held` lists the process's certificates as they are now. */
export function registerCertificateExpiry(registry: Registry, held: () => readonly HeldCertificate[]): void {
  new Gauge({
    name: "novacron_certificate_expiry_timestamp_seconds",
    help: "When a certificate this process holds expires (Unix time, seconds), by certificate (ca, server, host)",
    labelNames: ["certificate"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const c of held()) {
        if (!c.pem) continue;
        const notAfter = new Date(new X509Certificate(c.pem).validTo).getTime();
        this.set({ certificate: c.certificate }, Math.floor(notAfter / 1000));
      }
    },
  });
}
