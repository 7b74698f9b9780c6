/**
 * The cluster PKI's certificate operations (docs/security.md): a cluster CA, CSRs made
 * by agents for their own keys, certificates issued from them, and the identity a
 * certificate names. Keys are ECDSA P-256, signatures SHA-256.
 *
 * Identities are URI SANs, not host names: `urn:novacron:server` for the control plane,
 * `urn:novacron:host:<host id>` for an agent and `urn:novacron:scraper` for a metrics
 * scraper (Prometheus), which may read `/metrics` and nothing else. Peers check the chain to the cluster CA
 * and the role, so the cluster works whatever addresses its processes are reached at;
 * DNS and IP SANs are added as well for tools like curl.
 *
 * Generating X.509 is done by @peculiar/x509 (Node can parse certificates but not make
 * them); Node's X509Certificate reads them back.
 */
import { createPrivateKey, randomBytes, webcrypto, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata API.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { NovaError } from "../lib/errors.js";

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** URI SAN naming the control plane. */
export const SERVER_IDENTITY = "urn:novacron:server";
/** URI SAN prefix naming an agent: the host id follows. */
export const HOST_IDENTITY_PREFIX = "urn:novacron:host:";
/** URI SAN naming a metrics scraper: it may read `/metrics` of the server and the agents, nothing else. */
export const SCRAPER_IDENTITY = "urn:novacron:scraper";

/** A certificate and its private key, PEM. */
export interface CertAndKey {
  certPem: string;
  keyPem: string;
}

/** What a certificate says about itself. */
export interface CertInfo {
  /** Serial number, lower-case hex. */
  serial: string;
  /** SHA-256 of the DER, `sha256:` + lower-case hex. */
  fingerprint: string;
  commonName: string;
  notBefore: Date;
  notAfter: Date;
  /** URI SANs (the identities). */
  uris: string[];
}

/** Who a certificate is: the server, a host (with its id), a metrics scraper, or nothing NovaCron issued. */
export type CertIdentity =
  | { role: "server" }
  | { role: "host"; hostId: string }
  | { role: "scraper" }
  | { role: "unknown" };

/** What to put in an issued certificate. */
export interface CertProfile {
  commonName: string;
  /** URI SANs: the identity (SERVER_IDENTITY or HOST_IDENTITY_PREFIX + id). */
  uris: string[];
  /** DNS names and IP addresses, for tools that check them. */
  names?: string[];
  /** An organisational unit (OU) in the subject after the CN, for peers that match subjects. */
  unit?: string;
  /** @defaultValue 365 */
  validDays?: number;
}

async function newKeys(): Promise<CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function keyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", key));
  return pem(x509.PemConverter.encode(der, "PRIVATE KEY"));
}

async function importKeys(pem: string): Promise<CryptoKeyPair> {
  const der = x509.PemConverter.decodeFirst(pem);
  const privateKey = await webcrypto.subtle.importKey("pkcs8", der, ALG, true, ["sign"]);
  // The public half comes from the private key's JWK (x, y are in it).
  const jwk = await webcrypto.subtle.exportKey("jwk", privateKey);
  const publicKey = await webcrypto.subtle.importKey(
    "jwk",
    { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, ext: true } as webcrypto.JsonWebKey,
    ALG,
    true,
    ["verify"],
  );
  return { privateKey, publicKey } as CryptoKeyPair;
}

function serialHex(): string {
  const bytes = randomBytes(16);
  bytes[0] = bytes[0]! & 0x7f; // positive, as DER INTEGER serials must be
  return bytes.toString("hex");
}

function dateDaysFromNow(days: number): Date {
  return new Date(Date.now() + days * 86_400_000);
}

/** Creates a self-signed cluster CA. */
export async function createCa(commonName: string, validDays = 3650): Promise<CertAndKey> {
  const keys = await newKeys();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serialHex(),
    name: `CN=${escapeDn(commonName)}`,
    // Back-dated a little so a peer whose clock is slightly behind accepts it.
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: dateDaysFromNow(validDays),
    signingAlgorithm: ALG,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: pem(cert.toString("pem")), keyPem: await keyPem(keys.privateKey) };
}

/** A new key and a CSR for it (the agent's side of joining and renewing). */
export async function createCsr(commonName: string): Promise<{ csrPem: string; keyPem: string }> {
  const keys = await newKeys();
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${escapeDn(commonName)}`,
    keys,
    signingAlgorithm: ALG,
  });
  return { csrPem: pem(csr.toString("pem")), keyPem: await keyPem(keys.privateKey) };
}

/**
 * Issues a certificate for the key in `csrPem`, signed by `ca`. The CSR's own signature
 * must verify (the requester holds the key); everything else in it is ignored: the
 * profile says what the certificate names.
 */
export async function issueFromCsr(ca: CertAndKey, csrPem: string, profile: CertProfile): Promise<string> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new NovaError(
      "NOVA_BAD_REQUEST",
      `The certificate request is not a PEM PKCS#10 CSR: ${String(err)}`,
    );
  }
  if (!(await csr.verify())) {
    throw new NovaError("NOVA_BAD_REQUEST", "The certificate request's signature does not verify.");
  }
  const publicKey = await csr.publicKey.export(ALG, ["verify"]);
  return issue(ca, publicKey, profile);
}

/** Issues a certificate with a new key (the server's own certificate). */
export async function issueWithNewKey(ca: CertAndKey, profile: CertProfile): Promise<CertAndKey> {
  const keys = await newKeys();
  return { certPem: await issue(ca, keys.publicKey, profile), keyPem: await keyPem(keys.privateKey) };
}

async function issue(ca: CertAndKey, publicKey: CryptoKey, profile: CertProfile): Promise<string> {
  const caCert = new x509.X509Certificate(ca.certPem);
  const caKeys = await importKeys(ca.keyPem);
  const sans: x509.JsonGeneralName[] = profile.uris.map((value) => ({ type: "url", value }));
  for (const name of profile.names ?? []) sans.push({ type: isIP(name) ? "ip" : "dns", value: name });
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serialHex(),
    subject: `CN=${escapeDn(profile.commonName)}${profile.unit ? `, OU=${escapeDn(profile.unit)}` : ""}`,
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 3_600_000),
    notAfter: dateDaysFromNow(profile.validDays ?? 365),
    signingAlgorithm: ALG,
    publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // Not critical: QEMU (GnuTLS) refuses a critical keyUsage without keyEncipherment,
      // which an ECDSA key has no use for.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, false),
      // Every NovaCron process both serves and calls others (the server calls agents,
      // agents call the server and each other), so each certificate carries both usages.
      new x509.ExtendedKeyUsageExtension([
        x509.ExtendedKeyUsage.serverAuth,
        x509.ExtendedKeyUsage.clientAuth,
      ]),
      new x509.SubjectAlternativeNameExtension(sans),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return pem(cert.toString("pem"));
}

/** PEM text ending in one newline, so that PEMs concatenate into a chain. */
function pem(text: string): string {
  return `${text.trim()}\n`;
}

/** Reads a PEM certificate. */
export function certInfo(pem: string): CertInfo {
  const cert = new X509Certificate(pem);
  return {
    serial: cert.serialNumber.toLowerCase().replace(/^0+(?=.)/, ""),
    fingerprint: `sha256:${cert.fingerprint256.replaceAll(":", "").toLowerCase()}`,
    commonName: /CN=([^\n]*)/.exec(cert.subject)?.[1] ?? "",
    notBefore: new Date(cert.validFrom),
    notAfter: new Date(cert.validTo),
    uris: urisOf(cert.subjectAltName),
  };
}

/** Normalises a serial as certInfo and Node's TLS peer certificates give it. */
export function normaliseSerial(serial: string): string {
  return serial.toLowerCase().replace(/^0+(?=.)/, "");
}

/** The URI SANs in Node's `subjectAltName` text ("URI:urn:…, DNS:…"). */
export function urisOf(subjectAltName: string | undefined): string[] {
  if (!subjectAltName) return [];
  return subjectAltName
    .split(", ")
    .filter((s) => s.startsWith("URI:"))
    .map((s) => s.slice(4));
}

/** Who a certificate's URI SANs name. */
export function identityOf(uris: readonly string[]): CertIdentity {
  if (uris.includes(SERVER_IDENTITY)) return { role: "server" };
  const host = uris.find((u) => u.startsWith(HOST_IDENTITY_PREFIX));
  if (host) return { role: "host", hostId: host.slice(HOST_IDENTITY_PREFIX.length) };
  if (uris.includes(SCRAPER_IDENTITY)) return { role: "scraper" };
  return { role: "unknown" };
}

/** The SHA-256 fingerprint of a PEM certificate (`sha256:` + hex). */
export function fingerprintOf(pem: string): string {
  return certInfo(pem).fingerprint;
}

/** True when `certPem` was signed by `caPem` (and the key in `keyPem` is its key, when given). */
export function verifyIssued(certPem: string, caPem: string, keyPem?: string): boolean {
  const cert = new X509Certificate(certPem);
  const ca = new X509Certificate(caPem);
  if (!cert.checkIssued(ca) || !cert.verify(ca.publicKey)) return false;
  if (keyPem === undefined) return true;
  return cert.checkPrivateKey(createPrivateKey(keyPem));
}

function escapeDn(value: string): string {
  return value.replace(/([,+"\\<>;=])/g, "\\$1");
}
