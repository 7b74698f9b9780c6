/**
 * Builds the web console (src/console) into dist/console: hashed assets under /assets,
 * each text file also pre-compressed (.br, .gz) so the server sends them without
 * compressing per request (src/api/console-assets.ts).
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { defineConfig, type Plugin } from "vite";

const root = import.meta.dirname;
const outDir = path.resolve(root, "../../dist/console");
const COMPRESSIBLE = /\.(js|css|html|svg|json|txt)$/;

/** Writes NAME.br and NAME.gz beside every compressible file of the bundle. */
function precompress(): Plugin {
  return {
    name: "novacron-precompress",
    apply: "build",
    writeBundle(_options, bundle) {
      for (const file of [...Object.keys(bundle), "index.html"]) {
        if (!COMPRESSIBLE.test(file)) continue;
        const full = path.join(outDir, file);
        const body = readFileSync(full);
        writeFileSync(
          `${full}.br`,
          brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }),
        );
        writeFileSync(`${full}.gz`, gzipSync(body, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  root,
  base: "/",
  publicDir: path.join(root, "public"),
  // No React plugin: esbuild compiles TSX with the automatic runtime; fast refresh is all
  // the plugin would add, and only in development.
  esbuild: { jsx: "automatic" },
  plugins: [precompress()],
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: "assets",
    target: "es2022",
    // The polyfill would be an inline script, which the Content-Security-Policy refuses.
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
    sourcemap: false,
  },
});
