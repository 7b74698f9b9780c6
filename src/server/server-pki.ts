/**
 * The server's side of the cluster PKI (docs/security.md): at first start it creates the
 * cluster CA in `<data dir>/pki/` (or uses an operator's CA given as files), issues its own
 * TLS certificate, renews that before it expires, and signs hosts' and metrics scrapers'
 * certificates.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { SCRAPER_CERT_UNIT } from "../api/types/metrics.js";
import { NovaError } from "../lib/errors.js";
import {
  type CertAndKey,
  certInfo,
  createCa,
  HOST_IDENTITY_PREFIX,
  issueFromCsr,
  issueWithNewKey,
  SCRAPER_IDENTITY,
  SERVER_IDENTITY,
  verifyIssued,
} from "../security/pki.js";

/** Where the CA comes from. */
export interface ServerPkiOptions {
  dataDir: string;
  /** An operator's CA certificate and key (PEM files); else NovaCron's own in the data dir. */
  caCertFile?: string;
  caKeyFile?: string;
  /** Extra DNS names / IPs for the server certificate (for tools that check them). */
  names?: string[];
  /** @defaultValue 365 */
  serverCertDays?: number;
  /** @defaultValue 90 */
  hostCertDays?: number;
}

/** The server's PKI state. */
export interface ServerPki {
  ca: CertAndKey;
  /** The CA's fingerprint (`sha256:` + hex): what operators compare at login. */
  caFingerprint: string;
  /** The server's own certificate (serverAuth + clientAuth) and key. */
  server: CertAndKey;
  /** The server certificate followed by the CA, as TLS servers present it. */
  serverChainPem: string;
  /** Where the CA certificate is, for `--ca-file` users. */
  caCertPath: string;
  /** Signs a host's CSR. */
  issueHostCert(csrPem: string, host: { id: string; name: string }): Promise<string>;
  /** Signs a metrics scraper's CSR (`novacron metrics credentials`): its identity reads /metrics only. */
  issueScraperCert(csrPem: string, name: string, validDays: number): Promise<string>;
  /** Issues a fresh server certificate (rotation); the caller swaps it into its TLS server. */
  renewServerCert(): Promise<void>;
  /** Days the host certificates it issues are valid. */
  hostCertDays: number;
}

async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  await writeFile(`${file}.tmp`, text, { mode });
  await rename(`${file}.tmp`, file);
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

/** Loads (or on first start creates) the CA and issues the server's certificate. */
export async function loadServerPki(o: ServerPkiOptions): Promise<ServerPki> {
  const dir = path.join(o.dataDir, "pki");
  await mkdir(dir, { recursive: true, mode: 0o700 });
  let ca: CertAndKey;
  let caCertPath: string;
  if (o.caCertFile || o.caKeyFile) {
    if (!o.caCertFile || !o.caKeyFile)
      throw new NovaError("NOVA_CONFIG", "Give both --ca-cert and --ca-key to use your own CA.");
    ca = { certPem: await readFile(o.caCertFile, "utf8"), keyPem: await readFile(o.caKeyFile, "utf8") };
    if (!verifyIssued(ca.certPem, ca.certPem, ca.keyPem)) {
      throw new NovaError(
        "NOVA_CONFIG",
        `${o.caCertFile} is not a self-signed CA certificate whose key is ${o.caKeyFile}. Give a root CA (intermediate CAs are not supported yet).`,
      );
    }
    caCertPath = o.caCertFile;
  } else {
    caCertPath = path.join(dir, "ca.crt");
    const certPem = await readIfExists(caCertPath);
    const keyPem = await readIfExists(path.join(dir, "ca.key"));
    if (certPem && keyPem) {
      ca = { certPem, keyPem };
    } else if (certPem || keyPem) {
      throw new NovaError(
        "NOVA_CONFIG",
        `${dir} holds only half of the cluster CA (ca.crt and ca.key go together). Restore the missing file from a backup; deleting both makes a new CA, and every agent and CLI must then join and log in again.`,
      );
    } else {
      ca = await createCa(`NovaCron cluster CA ${os.hostname()}`);
      await writeAtomic(path.join(dir, "ca.key"), ca.keyPem, 0o600);
      await writeAtomic(caCertPath, ca.certPem, 0o644);
    }
  }
  const caFingerprint = certInfo(ca.certPem).fingerprint;
  const names = [...new Set(["localhost", "127.0.0.1", "::1", os.hostname(), ...(o.names ?? [])])];
  const hostCertDays = o.hostCertDays ?? 90;

  const pki: ServerPki = {
    ca,
    caFingerprint,
    caCertPath,
    hostCertDays,
    server: { certPem: "", keyPem: "" },
    serverChainPem: "",
    issueHostCert: (csrPem, host) =>
      issueFromCsr(ca, csrPem, {
        commonName: host.name,
        uris: [`${HOST_IDENTITY_PREFIX}${host.id}`],
        names: [host.name],
        validDays: hostCertDays,
      }),
    issueScraperCert: (csrPem, name, validDays) =>
      issueFromCsr(ca, csrPem, {
        commonName: `scraper-${name}`,
        unit: SCRAPER_CERT_UNIT,
        uris: [SCRAPER_IDENTITY],
        validDays,
      }),
    renewServerCert: async () => {
      // A new key each time: the server's key never outlives its certificate.
      pki.server = await issueWithNewKey(ca, {
        commonName: "novacron-server",
        uris: [SERVER_IDENTITY],
        names,
        validDays: o.serverCertDays ?? 365,
      });
      pki.serverChainPem = `${pki.server.certPem.trim()}\n${ca.certPem.trim()}\n`;
    },
  };
  await pki.renewServerCert();
  return pki;
}
