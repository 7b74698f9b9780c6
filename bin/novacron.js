#!/usr/bin/env node
// The novacron command: runs the compiled CLI (npm run build writes dist/). runCli returns
// when a command is done; for `server` and `agent` that is after SIGINT/SIGTERM and a
// clean shutdown.
import { runCli } from "../dist/cli/main.js";

process.exit(await runCli(process.argv));
