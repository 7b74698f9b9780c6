/**
 * Builds the wanem C program with the machine's gcc, once per source version, into
 * `.cache/nc-dwcp/` (or NOVACRON_DWCP_CACHE). The source is found next to this module
 * (src/) or, from a compiled build, by walking up to the repository's src/testing/wanem/.
 *
 * Dev-only test tooling (src/testing/): only tests, benches, src/demo and *.test.ts may
 * import it; the shipped library never does.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { NovaError } from "../../lib/errors.js";
import { sh } from "./netns.js";

function findSource(): string {
  // From src/ the file is next to this module; from a compiled build (dist/, .cache/bench/)
  // it is found by walking up to the repository's src/testing/wanem/.
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "wanem.c"), resolve(process.cwd(), "src/testing/wanem/wanem.c")];
  for (let dir = here; dirname(dir) !== dir; dir = dirname(dir))
    candidates.push(join(dir, "src/testing/wanem/wanem.c"));
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new NovaError("NOVA_DWCP_EMULATOR", `wanem.c not found (looked in ${candidates.join(", ")})`);
  return found;
}

/** Returns the path of a built wanem binary, compiling it if needed. */
export async function buildWanem(): Promise<string> {
  const src = findSource();
  const text = readFileSync(src);
  const tag = createHash("sha256").update(text).digest("hex").slice(0, 12);
  const dir = process.env.NOVACRON_DWCP_CACHE ?? resolve(process.cwd(), ".cache/nc-dwcp");
  const bin = join(dir, `wanem-${tag}`);
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tmp = `${bin}.${process.pid}.tmp`;
  await sh("gcc", ["-O2", "-Wall", "-o", tmp, src]);
  renameSync(tmp, bin);
  return bin;
}
