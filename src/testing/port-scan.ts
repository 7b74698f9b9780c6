/**
 * A port scan of NovaCron's processes, as an attacker on their networks would do it: list
 * every listening TCP socket (in the initial network namespace or a named one), then
 * probe each one on a non-loopback address with garbage and with a TLS handshake that
 * presents no certificate. A listener passes when garbage gets nothing but a TLS alert or
 * a close, and a certificate-less TLS client is refused or gets only 401s. Used by the
 * WAN suite during a migration (docs/security.md, "Done when" of issue 12).
 *
 * Dev-only test tooling (src/testing/): only tests, benches and src/demo import it.
 */
import { execFile } from "node:child_process";
import { connect as tcpConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileP = promisify(execFile);

/** One listening socket. */
export interface Listener {
  address: string;
  port: number;
  /** The processes holding it, as `ss` names them ("qemu-system-x86", "node", …). */
  processes: string[];
  pids: number[];
}

/** What a probe saw. */
export interface ProbeResult {
  /** Garbage sent in clear: `tls-alert`, `closed` (passes), `answered` (bytes that are no TLS alert) or `kept-open` (it took the bytes and waits for more). */
  garbage: "tls-alert" | "closed" | "answered" | "kept-open";
  /**
   * A TLS client with no certificate: `refused` (closed or reset, during or right after
   * the handshake), `no-tls` (no handshake and no refusal: something else holds the
   * connection), `kept-open` (the handshake completed and the request got no answer), or
   * the HTTP status of an unauthenticated request.
   */
  tlsWithoutCertificate: "refused" | "no-tls" | "kept-open" | number;
  /** First bytes of an answer, for the failure message. */
  sample?: string;
}

/** Listening TCP sockets, in `netns` (by `ip netns exec`) or this namespace. */
export async function listListeners(netns?: string): Promise<Listener[]> {
  const [cmd, args] = netns ? ["ip", ["netns", "exec", netns, "ss", "-ltnpH"]] : ["ss", ["-ltnpH"]];
  const { stdout } = await execFileP(cmd, args as string[]);
  const out: Listener[] = [];
  for (const line of stdout.split("\n").filter(Boolean)) {
    // LISTEN 0 511 10.0.0.1:7800 0.0.0.0:* users:(("node",pid=12,fd=20))
    const cols = line.trim().split(/\s+/);
    const local = cols[3] ?? "";
    const cut = local.lastIndexOf(":");
    const address = local
      .slice(0, cut)
      .replace(/^\[|\]$/g, "")
      .replace(/%.*$/, "");
    const port = Number(local.slice(cut + 1));
    const users = cols.slice(5).join(" ");
    const processes = [...users.matchAll(/\("([^"]+)"/g)].map((m) => m[1]!);
    const pids = [...users.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    out.push({ address, port, processes, pids });
  }
  return out;
}

/** True for loopback addresses (the only ones an unauthenticated service may use). */
export function isLoopback(address: string): boolean {
  return address === "::1" || address.startsWith("127.") || address === "localhost";
}

/** Probes one listener from this process's namespace. */
export async function probe(host: string, port: number, timeoutMs = 2000): Promise<ProbeResult> {
  const garbage = await new Promise<Pick<ProbeResult, "garbage" | "sample">>((resolve) => {
    const s = tcpConnect({ host, port });
    const chunks: Buffer[] = [];
    const done = (r: Pick<ProbeResult, "garbage" | "sample">) => {
      clearTimeout(timer);
      s.destroy();
      resolve(r);
    };
    const verdict = (): Pick<ProbeResult, "garbage" | "sample"> => {
      const data = Buffer.concat(chunks);
      if (data.length === 0) return { garbage: "closed" };
      if (data[0] === 0x15) return { garbage: "tls-alert" };
      return { garbage: "answered", sample: data.subarray(0, 60).toString("latin1") };
    };
    const timer = setTimeout(() => {
      const data = Buffer.concat(chunks);
      done(data.length === 0 ? { garbage: "kept-open" } : verdict());
    }, timeoutMs);
    s.on("connect", () =>
      s.write(Buffer.from("GARBAGE\r\n\r\n\u0000\u0001\u0002QEVM\u0000\u0000\u0000\u0003".repeat(8))),
    );
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", () => done(verdict()));
    s.on("close", () => done(verdict()));
  });
  const tlsWithoutCertificate = await new Promise<ProbeResult["tlsWithoutCertificate"]>((resolve) => {
    const s = tlsConnect({
      host,
      port,
      rejectUnauthorized: false,
      servername: undefined as unknown as string,
    });
    let text = "";
    let secure = false;
    const finish = (timedOut: boolean) => {
      clearTimeout(timer);
      s.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1];
      if (status) resolve(Number(status));
      else if (!timedOut) resolve("refused");
      else resolve(secure ? "kept-open" : "no-tls");
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    s.on("secureConnect", () => {
      secure = true;
      s.write(`GET /v1/hosts HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
    });
    s.on("data", (d: Buffer) => {
      text += d.toString("latin1");
    });
    // A TLS 1.3 server refusing the missing certificate does so after the handshake (an
    // alert, or a reset as QEMU's GnuTLS does); either way no request got through.
    s.on("error", () => finish(false));
    s.on("close", () => finish(false));
  });
  return { ...garbage, tlsWithoutCertificate };
}

/** Whether a probe result shows a listener that needs authentication before it acts on anything. */
export function authenticatedOnly(r: ProbeResult): boolean {
  const garbageOk = r.garbage === "tls-alert" || r.garbage === "closed";
  const tlsOk = r.tlsWithoutCertificate === "refused" || r.tlsWithoutCertificate === 401;
  return garbageOk && tlsOk;
}

/** Probes from inside network namespace `netns` (runs this module there with the same Node). */
export async function probeFrom(netns: string, host: string, port: number): Promise<ProbeResult> {
  // Plain Node runs the built module (dist/), also when this one runs from src/ under vitest.
  const self = fileURLToPath(import.meta.url).replace(
    /\/src\/testing\/port-scan\.ts$/,
    "/dist/testing/port-scan.js",
  );
  const script = `const m = await import(${JSON.stringify(self)}); process.stdout.write(JSON.stringify(await m.probe(${JSON.stringify(host)}, ${port})));`;
  const { stdout } = await execFileP("ip", [
    "netns",
    "exec",
    netns,
    process.execPath,
    "--input-type=module",
    "-e",
    script,
  ]);
  return JSON.parse(stdout) as ProbeResult;
}
