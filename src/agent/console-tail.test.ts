import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readLastLines } from "./console-tail.js";

describe("console tail", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp("/tmp/nc-tail-");
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("returns the last lines of a large file, none of them cut", async () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `NC-HEARTBEAT seq=${i + 1} uptime=${i}.00`);
    await writeFile(`${dir}/big.log`, `${lines.join("\r\n")}\r\n`);
    expect(await readLastLines(`${dir}/big.log`, 3)).toEqual(lines.slice(-3));
    expect(await readLastLines(`${dir}/big.log`, 1000)).toEqual(lines.slice(-1000));
  });

  it("returns what there is for a short file, including an unfinished last line", async () => {
    await writeFile(`${dir}/short.log`, "a\nb\nc");
    expect(await readLastLines(`${dir}/short.log`, 10)).toEqual(["a", "b", "c"]);
  });

  it("returns nothing for a console that does not exist yet", async () => {
    expect(await readLastLines(`${dir}/none.log`, 10)).toEqual([]);
  });
});
