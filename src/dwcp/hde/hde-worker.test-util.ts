/**
 * Test support for HDE worker threads: unit tests run the TypeScript sources, which a
 * worker thread cannot load, so this transpiles hde-worker.ts and everything it imports
 * (relative imports, followed) into .cache/test-workers and returns the worker's URL. It
 * also writes small broken workers, to test how the pool fails.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import ts from "typescript";

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const OUT = path.resolve(SRC, "../.cache/test-workers");
let built: URL | null = null;

/** The URL of a runnable hde-worker.js built from the current sources (once per process). */
export function testWorkerUrl(): URL {
  if (built) return built;
  const seen = new Set<string>();
  const todo = [path.join(SRC, "dwcp/hde/hde-worker.ts")];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (seen.has(file)) continue;
    seen.add(file);
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/from "(\.{1,2}\/[^"]+)\.js"/g))
      todo.push(path.resolve(path.dirname(file), `${m[1]}.ts`));
    const js = ts.transpileModule(source, {
      compilerOptions: {
        module: ts.ModuleKind.ESNext,
        target: ts.ScriptTarget.ES2022,
        verbatimModuleSyntax: true,
      },
    }).outputText;
    const out = path.join(OUT, path.relative(SRC, file)).replace(/\.ts$/, ".js");
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, js);
  }
  // ESM without a package.json saying so would be read as CommonJS.
  writeFileSync(path.join(OUT, "package.json"), '{ "type": "module" }\n');
  built = pathToFileURL(path.join(OUT, "dwcp/hde/hde-worker.js"));
  return built;
}

/** A worker that exits with code 7 on its first job (a crash mid-stream). */
export function exitingWorkerUrl(): URL {
  return writeWorker(
    "exits.mjs",
    'import { parentPort } from "node:worker_threads";\nparentPort.on("message", () => process.exit(7));\n',
  );
}

/** A worker that throws while loading (a start that fails). */
export function throwingWorkerUrl(): URL {
  return writeWorker("throws.mjs", 'throw new Error("worker could not start");\n');
}

function writeWorker(name: string, code: string): URL {
  mkdirSync(OUT, { recursive: true });
  const file = path.join(OUT, name);
  writeFileSync(file, code);
  return pathToFileURL(file);
}
