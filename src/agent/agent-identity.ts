/**
 * The agent's identity in its cluster (docs/security.md): its private key (made here,
 * never sent), the host certificate the server issued from its CSR, the cluster CA it
 * trusts, which server and host id these belong to, and the id of the server's cluster
 * (what the fencing tokens of the VMs it owns name). Kept in `<data dir>/pki/`, the
 * key 0600. A renewal writes the new key and certificate under new names and then
 * switches `identity.json` to them in one rename, so a crash never pairs a key with
 * another key's certificate.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { certInfo, verifyIssued } from "../security/pki.js";

/** What the agent is known by. */
export interface AgentIdentity {
  serverUrl: string;
  hostId: string;
  /**
   * The cluster's id, from the registration reply. Absent in an identity saved before
   * agents were told it: the agent then registers again at its next heartbeat.
   */
  clusterId?: string;
  caPem: string;
  certPem: string;
  keyPem: string;
}

const META = "identity.json";

interface Meta {
  serverUrl: string;
  hostId: string;
  clusterId?: string;
  /** File names in the dir, of this generation. */
  ca: string;
  cert: string;
  key: string;
}

/** Reads and writes the identity files. */
export class AgentIdentityFiles {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = path.join(dataDir, "pki");
  }

  /**
   * The saved identity for `serverUrl` (or any of a control plane's replicas' URLs);
   * undefined when there is none, or it belongs to another server (pointing an agent
   * elsewhere means joining anew).
   */
  async load(serverUrl: string | readonly string[]): Promise<AgentIdentity | undefined> {
    const urls: readonly string[] = typeof serverUrl === "string" ? [serverUrl] : serverUrl;
    let meta: Meta;
    let caPem: string;
    let certPem: string;
    let keyPem: string;
    try {
      meta = JSON.parse(await readFile(path.join(this.dir, META), "utf8")) as Meta;
      if (!urls.includes(meta.serverUrl)) return undefined;
      const read = (f: string) => readFile(path.join(this.dir, path.basename(f)), "utf8");
      [caPem, certPem, keyPem] = await Promise.all([read(meta.ca), read(meta.cert), read(meta.key)]);
    } catch {
      return undefined;
    }
    // A certificate that is not from the CA or not for this key is worth nothing: join anew.
    if (!verifyIssued(certPem, caPem, keyPem)) return undefined;
    return {
      serverUrl: meta.serverUrl,
      hostId: meta.hostId,
      ...(meta.clusterId ? { clusterId: meta.clusterId } : {}),
      caPem,
      certPem,
      keyPem,
    };
  }

  /** Saves an identity as a new generation, switches to it, then removes older ones. */
  async save(id: AgentIdentity): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const gen = certInfo(id.certPem).serial;
    const meta: Meta = {
      serverUrl: id.serverUrl,
      hostId: id.hostId,
      ...(id.clusterId ? { clusterId: id.clusterId } : {}),
      ca: `ca-${gen}.crt`,
      cert: `host-${gen}.crt`,
      key: `host-${gen}.key`,
    };
    await writeFile(path.join(this.dir, meta.key), id.keyPem, { mode: 0o600 });
    await writeFile(path.join(this.dir, meta.cert), id.certPem, { mode: 0o644 });
    await writeFile(path.join(this.dir, meta.ca), id.caPem, { mode: 0o644 });
    const file = path.join(this.dir, META);
    await writeFile(`${file}.tmp`, `${JSON.stringify(meta)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
    const keep = new Set([META, meta.ca, meta.cert, meta.key]);
    // Older generations only: the dir also holds QEMU's TLS directory (qemu/).
    for (const f of await readdir(this.dir)) {
      if (!keep.has(f) && /^(ca|host)-[0-9a-f]+\.(crt|key)$/.test(f)) {
        await rm(path.join(this.dir, f), { force: true });
      }
    }
  }
}

/** True when less than a third of the certificate's lifetime is left: time to renew. */
export function shouldRenew(certPem: string, now = Date.now()): boolean {
  const info = certInfo(certPem);
  const total = info.notAfter.getTime() - info.notBefore.getTime();
  return info.notAfter.getTime() - now < total / 3;
}
