/**
 * Throwaway certificates for TLS tests: a CA and leaves signed by it, made with the
 * openssl command (skipped when it is missing). Test infrastructure only.
 *
 * `makeTlsFixture(name)` gives a fresh CA and one leaf; `makeTlsCluster(names)` one CA
 * and a leaf per name (each valid as server and client, like the cluster PKI's host
 * certificates), for mutual TLS between several endpoints.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** PEM material for one CA and one leaf certificate. */
export interface TlsFixture {
  ca: string;
  cert: string;
  key: string;
}

/** True when the openssl command is available. */
export function haveOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

const EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];

/** Creates a CA and a leaf certificate for `name` (also valid for 127.0.0.1). */
export function makeTlsFixture(name = "dwcp.test"): TlsFixture {
  const cluster = makeTlsCluster([name]);
  return { ca: cluster.ca, ...cluster.leaves[name]! };
}

/** One CA and a leaf per name, each for `name` and 127.0.0.1, usable as server and client. */
export function makeTlsCluster(names: readonly string[]): {
  ca: string;
  leaves: Record<string, { cert: string; key: string }>;
} {
  const dir = mkdtempSync("/tmp/nc-dwcp-tls-");
  try {
    const run = (args: string[]): void => {
      execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    };
    run([
      "req",
      "-x509",
      ...EC,
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=nc-dwcp-test-ca",
    ]);
    const leaves: Record<string, { cert: string; key: string }> = {};
    names.forEach((name, i) => {
      run(["req", ...EC, "-keyout", `leaf${i}.key`, "-out", `leaf${i}.csr`, "-subj", `/CN=${name}`]);
      writeFileSync(
        join(dir, `ext${i}.cnf`),
        `subjectAltName=DNS:${name},IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n`,
      );
      run([
        "x509",
        "-req",
        "-in",
        `leaf${i}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        `leaf${i}.pem`,
        "-days",
        "2",
        "-extfile",
        `ext${i}.cnf`,
      ]);
      leaves[name] = {
        cert: readFileSync(join(dir, `leaf${i}.pem`), "utf8"),
        key: readFileSync(join(dir, `leaf${i}.key`), "utf8"),
      };
    });
    return { ca: readFileSync(join(dir, "ca.pem"), "utf8"), leaves };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Mutual-TLS options for both ends of a DWCP test session (one test CA, two leaves). */
export interface DwcpTestTls {
  /** For `DwcpListener.listen({ tls })`: client certificates required. */
  listen: { ca: string; cert: string; key: string; requestCert: true; rejectUnauthorized: true };
  /** For `dialSession({ tls })`: our certificate; the listener's chain checked, not its name. */
  dial: { ca: string; cert: string; key: string; checkServerIdentity: () => undefined };
}

let shared: DwcpTestTls | null = null;

/**
 * TLS material for tests and benchmarks that run DWCP sessions, made once per process
 * (openssl must be installed). Name checks are off: the peers are namespace addresses.
 */
export function dwcpTestTls(): DwcpTestTls {
  if (shared) return shared;
  const { ca, leaves } = makeTlsCluster(["listener.test", "dialer.test"]);
  shared = {
    listen: { ca, ...leaves["listener.test"]!, requestCert: true, rejectUnauthorized: true },
    dial: { ca, ...leaves["dialer.test"]!, checkServerIdentity: () => undefined },
  };
  return shared;
}

/**
 * A throwaway cluster CA that can sign several host certificates (the shape of the
 * lead's cluster PKI: ECDSA P-256, SAN DNS:<host name> plus its addresses, EKU serverAuth
 * and clientAuth). `close()` removes its key.
 */
export interface TestCa {
  /** The CA certificate (PEM). */
  ca: string;
  /** Signs a host certificate for `name`, valid for `ips` too. */
  issue(name: string, ips?: string[]): { cert: string; key: string };
  close(): void;
}

/** Creates a CA named `cn` (see TestCa). */
export function makeTestCa(cn = "nc-test-cluster-ca"): TestCa {
  const dir = mkdtempSync("/tmp/nc-test-ca-");
  const run = (args: string[]): void => {
    execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
  };
  const ecKey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  run(["req", "-x509", ...ecKey, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", `/CN=${cn}`]);
  let serial = 0;
  return {
    ca: readFileSync(join(dir, "ca.pem"), "utf8"),
    issue(name, ips = ["127.0.0.1"]) {
      serial += 1;
      const base = `leaf${serial}`;
      run(["req", ...ecKey, "-keyout", `${base}.key`, "-out", `${base}.csr`, "-subj", `/CN=${name}`]);
      const san = [`DNS:${name}`, ...ips.map((ip) => `IP:${ip}`)].join(",");
      writeFileSync(
        join(dir, `${base}.cnf`),
        [
          `subjectAltName=${san}`,
          "basicConstraints=critical,CA:FALSE",
          // QEMU (gnutls) refuses a critical key usage without keyEncipherment, even for
          // ECDSA keys where it means nothing: not critical here, as the cluster PKI does.
          "keyUsage=digitalSignature",
          "extendedKeyUsage=serverAuth,clientAuth",
          "",
        ].join("\n"),
      );
      run([
        "x509",
        "-req",
        "-in",
        `${base}.csr`,
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        String(1000 + serial),
        "-out",
        `${base}.pem`,
        "-days",
        "2",
        "-extfile",
        `${base}.cnf`,
      ]);
      return {
        cert: readFileSync(join(dir, `${base}.pem`), "utf8"),
        key: readFileSync(join(dir, `${base}.key`), "utf8"),
      };
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
