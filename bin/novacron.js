#!/usr/bin/env node
// The novacron command: runs the compiled CLI (npm run build writes dist/). runCli returns
// when a command is done; for `server` and `agent` that is after SIGINT/SIGTERM and a
// clean shutdown. The daemons' start-up is loaded only when one of them runs.
import { runCli } from "../dist/cli/main.js";

const loadDaemons = async () => (await import("../dist/daemons/launch.js")).launcher;
process.exit(await runCli(process.argv, { loadDaemons }));
