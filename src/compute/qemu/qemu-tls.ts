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
 *
 * The cluster CA also signs metrics scrapers' certificates (`novacron metrics
 * credentials`), which must open no QEMU listener: a server endpoint comes with an
 * `authz-list` object (`tlsAuthzId`) that refuses a subject carrying the scrapers' unit,
 * and the listeners name it as their `tls-authz`.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import type { ConnectionOptions } from "node:tls";
import { SCRAPER_CERT_UNIT } from "../../api/types/metrics.js";
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

/** The authz-list object that goes with server creds object `credsId`. */
export function tlsAuthzId(credsId: string): string {
  return `${credsId}-authz`;
}

/**
 * The rules of a listener's authorisation list: any subject but a metrics scraper's. QEMU
 * matches the glob against the peer's distinguished name as GnuTLS writes it
 * ("CN=…,OU=…" in either order); a host's subject is `CN=<host name>`, which cannot
 * contain "OU=".
 */
export const LISTENER_AUTHZ = {
  policy: "allow",
  rules: [{ match: `*OU=${SCRAPER_CERT_UNIT}*`, policy: "deny", format: "glob" }],
} as const;

/**
 * Loads the credentials in `dir` into QEMU as object `id` with verify-peer on (for a
 * server: the client must present a certificate from the same CA, and `tlsAuthzId(id)`
 * refuses a scraper's). Idempotent: an object `id` that exists already is kept (a
 * repeated step after a timeout).
 */
export async function addTlsCreds(
  qmp: QmpClient,
  opts: { id: string; dir: string; endpoint: "server" | "client" },
): Promise<string> {
  const objects = await queryObjects(qmp);
  if (opts.endpoint === "server" && !objects.includes(tlsAuthzId(opts.id))) {
    try {
      await objectAdd(qmp, "authz-list", tlsAuthzId(opts.id), { ...LISTENER_AUTHZ });
    } catch (err) {
      throw new NovaError(
        "NOVA_QEMU_ERROR",
        `Failed adding QEMU's TLS authorisation list: ${(err as Error).message}`,
        { cause: err },
      );
    }
  }
  if (objects.includes(opts.id)) return opts.id;
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

/** Removes creds object `id` (and its authz list) if it exists; harmless when QEMU still uses it or it is gone. */
export async function removeTlsCreds(qmp: QmpClient, id: string): Promise<void> {
  await objectDel(qmp, id).catch(() => undefined);
  await objectDel(qmp, tlsAuthzId(id)).catch(() => undefined);
}
