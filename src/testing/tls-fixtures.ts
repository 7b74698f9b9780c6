/**
 * Throwaway certificates for TLS tests: a CA and a leaf for "dwcp.test" signed by it,
 * made with the openssl command (skipped when it is missing). Test infrastructure only.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
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

/** Creates a CA and a leaf certificate for `name` (also valid for 127.0.0.1). */
export function makeTlsFixture(name = "dwcp.test"): TlsFixture {
  const dir = mkdtempSync("/tmp/nc-dwcp-tls-");
  try {
    const run = (args: string[]): void => {
      execFileSync("openssl", args, { cwd: dir, stdio: "ignore" });
    };
    run([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "ca.key",
      "-out",
      "ca.pem",
      "-days",
      "2",
      "-subj",
      "/CN=nc-dwcp-test-ca",
    ]);
    run([
      "req",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:P-256",
      "-nodes",
      "-keyout",
      "leaf.key",
      "-out",
      "leaf.csr",
      "-subj",
      `/CN=${name}`,
    ]);
    writeFileSync(join(dir, "ext.cnf"), `subjectAltName=DNS:${name},IP:127.0.0.1\n`);
    run([
      "x509",
      "-req",
      "-in",
      "leaf.csr",
      "-CA",
      "ca.pem",
      "-CAkey",
      "ca.key",
      "-CAcreateserial",
      "-out",
      "leaf.pem",
      "-days",
      "2",
      "-extfile",
      "ext.cnf",
    ]);
    return {
      ca: readFileSync(join(dir, "ca.pem"), "utf8"),
      cert: readFileSync(join(dir, "leaf.pem"), "utf8"),
      key: readFileSync(join(dir, "leaf.key"), "utf8"),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

/**
 * Writes QEMU's tls-creds-x509 directory for one host: the CA as ca-cert.pem and the
 * host's certificate and key under both the server-* and client-* names (the layout
 * the agent's `qemuTlsDir` expects, docs/migration.md). Returns `dir`.
 */
export function writeQemuTlsDir(dir: string, ca: string, host: { cert: string; key: string }): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileSync(join(dir, "ca-cert.pem"), ca);
  for (const side of ["server", "client"]) {
    writeFileSync(join(dir, `${side}-cert.pem`), host.cert);
    writeFileSync(join(dir, `${side}-key.pem`), host.key, { mode: 0o600 });
  }
  return dir;
}
