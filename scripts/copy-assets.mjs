#!/usr/bin/env node
// Copies what tsc does not emit into dist/ (the SQL migrations) and stamps the build so
// scripts/ensure.mjs can tell whether it is current. With --bench, copies the migrations
// next to the benchmarks' build (.cache/bench) instead. The old copy is removed first: a
// migration renamed or renumbered since must not linger and break the sequence.
import { cpSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const bench = process.argv.includes("--bench");
const out = path.join(root, bench ? ".cache/bench/src" : "dist");
const sql = path.join(out, "cluster/sql");
rmSync(sql, { recursive: true, force: true });
cpSync(path.join(root, "src/cluster/sql"), sql, { recursive: true });
if (!bench) writeFileSync(path.join(root, "dist/.build-stamp"), `${new Date().toISOString()}\n`);
