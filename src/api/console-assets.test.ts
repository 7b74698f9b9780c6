import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { CONSOLE_LIMITS, chooseEncoding, loadConsoleAssets } from "./console-assets.js";

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function consoleDir(files: Record<string, string | Buffer>): Promise<string> {
  dir = await mkdtemp("/tmp/nc-console-assets-");
  for (const [rel, body] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), body);
  }
  return dir;
}

describe("the console's files in memory", () => {
  it("loads each file with its compressed twins, hashed assets marked immutable", async () => {
    const assets = (await loadConsoleAssets(
      await consoleDir({
        "index.html": "<html>",
        "index.html.br": "b",
        "assets/app-1.js": "js",
        "assets/app-1.js.gz": "g",
      }),
    ))!;
    expect([...assets.keys()].sort()).toEqual(["/assets/app-1.js", "/index.html"]);
    expect(assets.get("/index.html")).toMatchObject({ type: "text/html; charset=utf-8", immutable: false });
    expect(assets.get("/index.html")!.br?.toString()).toBe("b");
    expect(assets.get("/assets/app-1.js")).toMatchObject({
      type: "text/javascript; charset=utf-8",
      immutable: true,
    });
    expect(assets.get("/assets/app-1.js")!.gzip?.toString()).toBe("g");
  });

  it("serves nothing without an index.html, and refuses a directory over its bounds", async () => {
    expect(await loadConsoleAssets(await consoleDir({ "a.js": "x" }))).toBeUndefined();
    await rm(dir!, { recursive: true });
    const many: Record<string, string> = { "index.html": "<html>" };
    for (let i = 0; i <= CONSOLE_LIMITS.maxFiles; i++) many[`assets/f${i}.js`] = "x";
    await expect(loadConsoleAssets(await consoleDir(many))).rejects.toThrow(/more than 500 files/);
    await rm(dir!, { recursive: true });
    const big = Buffer.alloc(CONSOLE_LIMITS.maxBytes + 1);
    await expect(loadConsoleAssets(await consoleDir({ "index.html": big }))).rejects.toThrow(/exceeds/);
  });

  it("picks brotli, then gzip, honouring q=0 and *", () => {
    const both = {
      type: "",
      body: Buffer.from(""),
      br: Buffer.from(""),
      gzip: Buffer.from(""),
      etag: "",
      immutable: true,
    };
    expect(chooseEncoding("gzip, deflate, br", both)).toBe("br");
    expect(chooseEncoding("gzip, br;q=0", both)).toBe("gzip");
    expect(chooseEncoding("*", both)).toBe("br");
    expect(chooseEncoding("identity", both)).toBeUndefined();
    expect(chooseEncoding(undefined, both)).toBeUndefined();
    expect(chooseEncoding("br", { ...both, br: undefined })).toBeUndefined();
  });
});
