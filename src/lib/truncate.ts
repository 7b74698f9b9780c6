/**
 * Marked cuts of long text (command output, HTTP bodies, error messages). The mark is what
 * lets the execution log masker (exec/masker.ts) hide a secret whose prefix sits right
 * before a cut, so every cut of text that may carry a secret goes through `truncate`,
 * on the agent as on the server.
 */

/** Marks where `truncate` cut a text. */
export const TRUNCATED = "…[truncated]";

/** Cuts `text` to `limit` characters, marking the cut (see TRUNCATED). */
export function truncate(text: string, limit: number): string {
  return text.length <= limit ? text : `${text.slice(0, limit)}${TRUNCATED}`;
}
