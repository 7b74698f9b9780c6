/**
 * HTTPS calls between NovaCron processes and from the CLI: a fetch that trusts only the
 * cluster CA (never the system's), optionally presents this process's certificate, and
 * accepts the peer only if its certificate names the expected identity (the server, or
 * one host by id) — see pki.ts for why identities and not host names are checked.
 *
 * Node 20's built-in fetch cannot take a CA or client certificate, so this uses undici,
 * the library Node's fetch is built from, with its own connection pool per identity.
 */
import { connect, type PeerCertificate } from "node:tls";
import { Agent, fetch as undiciFetch } from "undici";
import { HOST_IDENTITY_PREFIX, identityOf, SERVER_IDENTITY, urisOf } from "./pki.js";

/** What this process trusts and presents. */
export interface ClusterTls {
  /** The cluster CA, PEM: the only trust anchor. */
  caPem: string;
  /** This process's certificate and key, for mutual TLS. */
  certPem?: string;
  keyPem?: string;
}

/** Whom the peer must be. */
export type ExpectedPeer = { role: "server" } | { role: "host"; hostId?: string } | { role: "any" };

/** A fetch with the global fetch's signature, bound to a trust anchor and identity. */
export type ClusterFetch = (url: string | URL, init?: RequestInit) => Promise<Response>;

/** Why a peer's certificate is not the one expected, or undefined when it is. */
export function peerIdentityError(
  cert: Pick<PeerCertificate, "subjectaltname">,
  expected: ExpectedPeer,
): Error | undefined {
  const identity = identityOf(urisOf(cert.subjectaltname));
  if (expected.role === "any") {
    // A scraper only reads metrics: it is no process a NovaCron process calls or serves.
    return identity.role === "unknown" || identity.role === "scraper"
      ? new Error("the peer's certificate names no NovaCron process")
      : undefined;
  }
  if (expected.role === "server" && identity.role !== "server") {
    return new Error(`the peer is not the NovaCron server (its certificate must name ${SERVER_IDENTITY})`);
  }
  if (expected.role === "host") {
    if (identity.role !== "host") return new Error("the peer is not a NovaCron host");
    if (expected.hostId && identity.hostId !== expected.hostId) {
      return new Error(
        `the peer is host ${identity.hostId}, not ${expected.hostId} (its certificate names ${HOST_IDENTITY_PREFIX}${identity.hostId})`,
      );
    }
  }
  return undefined;
}

/** A connection pool that verifies the chain to `tls.caPem` and the peer's identity. */
export function clusterAgent(tls: ClusterTls, expected: ExpectedPeer): Agent {
  return new Agent({
    connect: {
      ca: tls.caPem,
      ...(tls.certPem && tls.keyPem ? { cert: tls.certPem, key: tls.keyPem } : {}),
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
      // The chain is verified against the cluster CA before this runs; the name checked
      // is the identity, so any address the peer is reached at works.
      checkServerIdentity: (_host: string, cert: PeerCertificate) => peerIdentityError(cert, expected),
    },
  });
}

/** A fetch over `agent` (plain http:// URLs pass through unencrypted, for in-process tests). */
export function fetchVia(agent: Agent): ClusterFetch {
  return (url, init) =>
    undiciFetch(url, { ...(init as object), dispatcher: agent }) as unknown as Promise<Response>;
}

/** A fetch that trusts `tls.caPem` and expects `expected` on the other side. */
export function clusterFetch(tls: ClusterTls, expected: ExpectedPeer): ClusterFetch {
  return fetchVia(clusterAgent(tls, expected));
}

/**
 * Reads the certificate chain a TLS server presents without trusting it (for `login` and
 * an agent's first join, which then compare the CA's fingerprint with one they were
 * given out of band). Returns the PEM of the chain's last certificate (the root).
 */
export async function fetchPresentedCa(url: string, timeoutMs = 10_000): Promise<string> {
  const u = new URL(url);
  if (u.protocol !== "https:") throw new Error(`${url} is not an https:// URL`);
  return new Promise((resolve, reject) => {
    const socket = connect({
      host: u.hostname.replace(/^\[|\]$/g, ""),
      port: Number(u.port || 443),
      rejectUnauthorized: false,
      minVersion: "TLSv1.3",
      timeout: timeoutMs,
    });
    socket.once("timeout", () =>
      socket.destroy(new Error(`no TLS handshake from ${url} within ${timeoutMs} ms`)),
    );
    socket.once("error", reject);
    socket.once("secureConnect", () => {
      let cert = socket.getPeerCertificate(true);
      const seen = new Set<string>();
      while (cert.issuerCertificate && cert.issuerCertificate !== cert && !seen.has(cert.fingerprint256)) {
        seen.add(cert.fingerprint256);
        cert = cert.issuerCertificate;
      }
      socket.end();
      if (!cert.raw) {
        reject(new Error(`${url} presented no certificate`));
        return;
      }
      resolve(
        `-----BEGIN CERTIFICATE-----\n${cert.raw
          .toString("base64")
          .replace(/(.{64})/g, "$1\n")
          .trim()}\n-----END CERTIFICATE-----\n`,
      );
    });
  });
}
