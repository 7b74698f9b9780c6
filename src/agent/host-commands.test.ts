import { mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Masker } from "../exec/masker.js";
import { isNovaError } from "../lib/errors.js";
import { TRUNCATED } from "../lib/truncate.js";
import { runAllowedCommand } from "./host-commands.js";

let dir: string;
let file: string;

beforeEach(async () => {
  dir = await mkdtemp("/tmp/nc-host-commands-unit-");
  file = path.join(dir, "host-commands.json");
  await writeFile(file, JSON.stringify({ commands: { hello: { argv: ["/bin/echo", "hello"] } } }));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("runAllowedCommand", () => {
  it("runs an allowlisted command", async () => {
    const out = await runAllowedCommand(file, "hello", [], new AbortController().signal);
    expect(out.exitCode).toBe(0);
    expect(out.stdout).toBe("hello\n");
  });

  it.each(["constructor", "__proto__", "toString", "hasOwnProperty", "valueOf", "nope"])(
    "refuses %s, which is not an own allowlist entry, with NOVA_COMMAND_NOT_ALLOWED",
    async (name) => {
      const err = await runAllowedCommand(file, name, [], new AbortController().signal).catch(
        (e: unknown) => e,
      );
      expect(isNovaError(err, "NOVA_COMMAND_NOT_ALLOWED")).toBe(true);
      expect((err as Error).message).toContain(`Command ${name} is not in this host's allowlist`);
    },
  );

  it("refuses an allowlist whose commands are not an object with NOVA_CONFIG", async () => {
    await writeFile(file, JSON.stringify({ commands: [{ argv: ["/bin/true"] }] }));
    const err = await runAllowedCommand(file, "0", [], new AbortController().signal).catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_CONFIG")).toBe(true);
  });

  it("marks output cut at its limit, so the server's masker hides a secret cut there", async () => {
    const secret = "hunter2-Sup3r$ecret!";
    const script = `process.stdout.write("x".repeat(256 * 1024 - 5) + ${JSON.stringify(secret)})`;
    await writeFile(file, JSON.stringify({ commands: { big: { argv: [process.execPath, "-e", script] } } }));
    const out = await runAllowedCommand(file, "big", [], new AbortController().signal);
    expect(out.stdout.slice(-40)).toBe(`${"x".repeat(23)}hunte${TRUNCATED}`.slice(-40));
    expect(new Masker([secret]).mask(out.stdout)).not.toContain("hunte");
  });
});
