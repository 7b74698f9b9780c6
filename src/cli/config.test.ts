import { lstat, mkdtemp, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readConfigFile, resolveConfig, writeConfigFile } from "./config.js";

describe("CLI config", () => {
  let dir: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-cfg-");
    env = { NOVACRON_CONFIG: `${dir}/config.json` };
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("explains how to log in when nothing is configured", async () => {
    await expect(resolveConfig({}, env)).rejects.toThrow(
      /No server URL and token configured. Run: novacron login/,
    );
  });

  it("writes the config file with mode 0600 and reads it back", async () => {
    await writeConfigFile({ server: "http://127.0.0.1:7700/", token: "file-token" }, env.NOVACRON_CONFIG);
    expect((await stat(env.NOVACRON_CONFIG!)).mode & 0o777).toBe(0o600);
    expect(await readConfigFile(env.NOVACRON_CONFIG)).toMatchObject({ token: "file-token" });
    expect(await resolveConfig({}, env)).toEqual({ server: "http://127.0.0.1:7700", token: "file-token" });
  });

  it("names the user of a saved session only while that session is the token in use", async () => {
    const file = env.NOVACRON_CONFIG!;
    await writeConfigFile({ server: "http://127.0.0.1:7700", token: "nvs_saved", user: "alice" }, file);
    expect(await resolveConfig({}, env)).toEqual({
      server: "http://127.0.0.1:7700",
      token: "nvs_saved",
      user: "alice",
    });
    expect(await resolveConfig({}, { ...env, NOVACRON_TOKEN: "nva_other" })).toEqual({
      server: "http://127.0.0.1:7700",
      token: "nva_other",
    });
  });

  it("keeps the CA pinned for a list of replicas for any of them, not for another URL", async () => {
    const file = env.NOVACRON_CONFIG!;
    await writeConfigFile({ server: "https://cp1:7700,https://cp2:7700", token: "t", ca: "PEM" }, file);
    const ca = async (server: string) => (await resolveConfig({ server }, env)).ca;
    // The rule itself is pinnedFor's (server-urls.test.ts); here, that the config uses it.
    expect(await ca("https://cp2:7700/")).toBe("PEM");
    expect(await ca("https://cp1:7700,https://cp3:7700")).toBeUndefined();
    expect((await resolveConfig({}, env)).server).toBe("https://cp1:7700,https://cp2:7700");
  });

  it("ends with mode 0600 even over a stale world-readable .tmp file", async () => {
    const file = env.NOVACRON_CONFIG!;
    await writeFile(`${file}.tmp`, "stale", { mode: 0o644 });
    await writeConfigFile({ server: "http://127.0.0.1:7700", token: "stale-tmp-token" }, file);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readConfigFile(file)).toMatchObject({ token: "stale-tmp-token" });
    await expect(lstat(`${file}.tmp`)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("does not write through a stale .tmp symlink", async () => {
    const file = env.NOVACRON_CONFIG!;
    const victim = `${dir}/victim`;
    await writeFile(victim, "untouched", { mode: 0o644 });
    await symlink(victim, `${file}.tmp`);
    await writeConfigFile({ server: "http://127.0.0.1:7700", token: "symlink-token" }, file);
    expect(await readFile(victim, "utf8")).toBe("untouched");
    expect((await lstat(file)).isFile()).toBe(true);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readConfigFile(file)).toMatchObject({ token: "symlink-token" });
  });

  it("prefers flags over environment over the file", async () => {
    const withEnv = { ...env, NOVACRON_TOKEN: "env-token" };
    expect((await resolveConfig({}, withEnv)).token).toBe("env-token");
    expect((await resolveConfig({ token: "flag-token" }, withEnv)).token).toBe("flag-token");
  });
});
