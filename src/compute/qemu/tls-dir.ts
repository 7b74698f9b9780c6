/**
 * QEMU's `tls-creds-x509` directory for one host: the cluster CA as ca-cert.pem and the
 * host's certificate and key under both the server-* and client-* names (a host is the
 * server of its incoming migrations and the client of its outgoing ones). QEMU reads the
 * files when a migration creates its credentials object, so a renewed certificate is used
 * from the next migration on. Keys are written 0600 through a rename.
 */
import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";

/** Writes (or refreshes) the directory; returns it. */
export async function writeQemuTlsDir(
  dir: string,
  material: { caPem: string; certPem: string; keyPem: string },
): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const put = async (name: string, text: string, mode: number) => {
    const file = path.join(dir, name);
    await writeFile(`${file}.tmp`, text, { mode });
    await rename(`${file}.tmp`, file);
  };
  await put("ca-cert.pem", material.caPem, 0o644);
  for (const side of ["server", "client"]) {
    await put(`${side}-key.pem`, material.keyPem, 0o600);
    await put(`${side}-cert.pem`, material.certPem, 0o644);
  }
  return dir;
}
