/**
 * Thin wrappers over `ip netns` and friends for the WAN emulator: create and delete
 * namespaces named `ncdw-*`, run a command inside one, and sweep namespaces left behind
 * by a process that died. Every namespace name embeds the creating pid for that sweep.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { NovaError } from "../../lib/errors.js";

const run = promisify(execFile);

/** Runs a program, failing with NOVA_DWCP_EMULATOR and its stderr. */
export async function sh(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { timeout: 20_000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new NovaError(
      "NOVA_DWCP_EMULATOR",
      `Failed running ${cmd} ${args.join(" ")}: ${(e.stderr || e.message).trim()}`,
      {
        cause: err,
      },
    );
  }
}

/** Runs `args` inside namespace `ns`. */
export function inNs(ns: string, args: string[]): Promise<string> {
  return sh("ip", ["netns", "exec", ns, ...args]);
}

/** Why the emulator cannot run here, or null when it can. */
export function emulatorUnavailableReason(): string | null {
  if (process.platform !== "linux") return "the WAN emulator needs Linux";
  if (process.getuid?.() !== 0) return "the WAN emulator needs root (ip netns, TAP devices)";
  if (!existsSync("/dev/net/tun")) return "the WAN emulator needs /dev/net/tun";
  for (const bin of ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) if (existsSync(bin)) return null;
  return "the WAN emulator needs the ip command (iproute2)";
}

/** Lists namespaces. */
export async function listNamespaces(): Promise<string[]> {
  const out = await sh("ip", ["netns", "list"]);
  return out
    .split("\n")
    .map((l) => l.split(" ")[0]!.trim())
    .filter(Boolean);
}

/** Deletes a namespace, ignoring "does not exist". */
export async function deleteNamespace(ns: string): Promise<void> {
  try {
    await sh("ip", ["netns", "delete", ns]);
  } catch {
    // Already gone.
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Deletes `ncdw-<pid>-*` namespaces and `ncmb<pid>-*` management bridges whose creating
 * process no longer exists.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const swept: string[] = [];
  for (const ns of await listNamespaces()) {
    const m = /^ncdw-(\d+)-/.exec(ns);
    if (m && !pidAlive(Number(m[1]))) {
      await deleteNamespace(ns);
      swept.push(ns);
    }
  }
  const links = await sh("ip", ["-o", "link", "show", "type", "bridge"]).catch(() => "");
  for (const m of links.matchAll(/^\d+: (ncmb(\d+)-[\w-]*)[:@]/gm)) {
    if (pidAlive(Number(m[2]))) continue;
    await sh("ip", ["link", "del", m[1]!]).catch(() => undefined);
    swept.push(m[1]!);
  }
  return swept;
}
