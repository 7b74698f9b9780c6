#!/usr/bin/env node
// Copies what tsc does not emit into dist/ (the SQL migrations) and stamps the build so
// scripts/ensure.mjs can tell whether it is current.
import { cpSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
cpSync(path.join(root, "src/cluster/sql"), path.join(root, "dist/cluster/sql"), { recursive: true });
writeFileSync(path.join(root, "dist/.build-stamp"), `${new Date().toISOString()}\n`);
