/**
 * QEMU's own TLS for the transports it listens and connects on itself (the migration
 * stream, multifd channels and the disk mirror's NBD connection): a `tls-creds-x509`
 * object loaded from a directory in QEMU's layout, with `verify-peer` on both ends, so
 * a listener on a non-loopback address accepts only a peer holding a certificate from
 * the cluster CA, and a client checks the destination's certificate against its host name.
 *
 * The directory (docs/migration.md, "Securing QEMU's transports"): ca-cert.pem, and the
 * host's certificate and key as server-cert.pem/server-key.pem and again as
 * client-cert.pem/client-key.pem. QEMU reads the files when the object is added, so the
 * object is added per migration: a rotated certificate counts from the next migration on.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { ConnectionOptions } from "node:tls";
import { NovaError } from "../../lib/errors.js";
import { objectAdd, objectDel, queryObjects } from "./commands.js";
import type { QmpClient } from "./qmp.js";

/** A tls-creds-x509 directory (see the module comment). */
export interface QemuTlsConfig {
  dir: string;
}

/** What a QEMU side needs to speak TLS to its peer. */
export interface QemuTlsPeer {
  /** The id of the tls-creds-x509 object (client endpoint). */
  creds: string;
  /** The name the destination's certificate must carry (its host name). */
  hostname: string;
}

/** The creds object's id for a migration's side (QOM ids: letters, digits, '-', '_', '.'). */
export function tlsCredsId(tag: string, endpoint: "server" | "client"): string {
  return `nc-tls-${endpoint}-${tag}`;
}

/**
 * Loads the credentials in `dir` into QEMU as object `id` with verify-peer on (for a
 * server: the client must present a certificate from the same CA). Idempotent: an object
 * `id` that exists already is kept (a repeated step after a timeout).
 */
export async function addTlsCreds(
  qmp: QmpClient,
  opts: { id: string; dir: string; endpoint: "server" | "client" },
): Promise<string> {
  if ((await queryObjects(qmp)).includes(opts.id)) return opts.id;
  try {
    await objectAdd(qmp, "tls-creds-x509", opts.id, {
      dir: opts.dir,
      endpoint: opts.endpoint,
      "verify-peer": true,
    });
  } catch (err) {
    throw new NovaError(
      "NOVA_QEMU_ERROR",
      `Failed loading QEMU's TLS credentials (${opts.endpoint}) from ${opts.dir}: ${(err as Error).message}`,
      { details: { dir: opts.dir, endpoint: opts.endpoint }, cause: err },
    );
  }
  return opts.id;
}

/**
 * Node's TLS client options from the same directory, for a process of ours that connects
 * to a QEMU listener requiring TLS (the destination's DWCP relay): the host's client
 * certificate, and the listener must present a certificate for `hostname` from the CA.
 */
export function nodeTlsClientOptions(config: QemuTlsConfig, hostname: string): ConnectionOptions {
  const read = (name: string): Buffer => readFileSync(path.join(config.dir, name));
  return {
    ca: read("ca-cert.pem"),
    cert: read("client-cert.pem"),
    key: read("client-key.pem"),
    servername: hostname,
  };
}

/** Removes creds object `id` if it exists; harmless when QEMU still uses it or it is gone. */
export async function removeTlsCreds(qmp: QmpClient, id: string): Promise<void> {
  await objectDel(qmp, id).catch(() => undefined);
}
