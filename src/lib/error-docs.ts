/** Renders docs/errors.md from the error-code registry (`npm run docs:errors`). */
import { ERROR_CODES } from "./error-codes.js";

/** The Markdown of docs/errors.md. */
export function renderErrorDocs(): string {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, e]) => `| \`${code}\` | ${e.status} | ${e.retryable ? "yes" : "no"} | ${e.description} |`,
  );
  return [
    "# Error codes",
    "",
    "<!-- Generated from src/lib/error-codes.ts by `npm run docs:errors`; a unit test keeps it in step. -->",
    "",
    "Every API error has one shape:",
    "",
    "```json",
    '{ "error": { "code": "NOVA_ILLEGAL_STATE", "message": "Cannot stop VM web1: it is stopped (...); in this state it allows: start, delete.", "details": { "state": "stopped", "allowedActions": ["start", "delete"] } } }',
    "```",
    "",
    "`code` is stable and safe to match on; `message` says what failed and how to fix it; `details` carries",
    "machine-readable context. The CLI prints the message and the code on one line and exits 1 (operation",
    'failed), 2 (bad usage or configuration) or 3 (server unreachable). "Retry" says whether the same',
    "request can succeed later without a change.",
    "",
    "| code | HTTP | retry | meaning |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

// Run directly: print the document.
if (process.argv[1]?.endsWith("error-docs.js")) process.stdout.write(renderErrorDocs());
