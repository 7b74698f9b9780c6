/**
 * The `http` step: calls an external automation service. Network errors, 429 and 5xx
 * are retried inside the step with exponential backoff and jitter; any other status not
 * in `expectStatus` (default 2xx) fails the step without retry. The response body is kept
 * (truncated) in the result, masked like everything else; only its first 16 KiB are ever
 * read, so a huge reply costs no memory. The step has no masker, so every cut goes
 * through `truncate`, whose mark lets the masker hide a secret cut at the limit.
 */
import type { PlanStep } from "../../api/types/executions.js";
import { describeError, NovaError } from "../../lib/errors.js";
import { readTextPrefix } from "../../lib/json-response.js";
import { TRUNCATED, truncate } from "../../lib/truncate.js";
import { backoffMs } from "../config.js";
import { type StepKind, sleep } from "./step.js";

type HttpStep = Extract<PlanStep, { kind: "http" }>;

const BODY_LIMIT = 4096;
/** Bytes read of a reply: enough for BODY_LIMIT characters of any UTF-8; the rest is never read. */
const READ_LIMIT_BYTES = 4 * BODY_LIMIT + 4;

/** The reply's body cut to BODY_LIMIT characters, reading at most READ_LIMIT_BYTES of it. */
async function boundedBody(res: Response): Promise<string> {
  const { text, truncated } = await readTextPrefix(res, READ_LIMIT_BYTES).catch(() => ({
    text: "",
    truncated: false,
  }));
  return truncated && text.length <= BODY_LIMIT ? `${text}${TRUNCATED}` : truncate(text, BODY_LIMIT);
}

/** Safe to repeat when the method is, unless the plan says otherwise. */
export const httpStep: StepKind<HttpStep> = {
  resumable: (s) => s.idempotent ?? ["GET", "PUT", "DELETE", "HEAD"].includes(s.method ?? "POST"),
  async run(step, ctx) {
    const method = step.method ?? "POST";
    const retries = step.retries ?? 3;
    const base = step.retryBaseMs ?? 500;
    const expected = (status: number) =>
      step.expectStatus ? step.expectStatus.includes(status) : status >= 200 && status < 300;
    const headers: Record<string, string> = { ...step.headers };
    let body: string | undefined;
    if (step.body !== undefined && method !== "GET" && method !== "HEAD") {
      body = typeof step.body === "string" ? step.body : JSON.stringify(step.body);
      if (
        typeof step.body !== "string" &&
        !Object.keys(headers).some((h) => h.toLowerCase() === "content-type")
      )
        headers["content-type"] = "application/json";
    }
    let lastProblem = "";
    for (let attempt = 1; attempt <= retries + 1; attempt++) {
      if (attempt > 1) {
        const delay = backoffMs({ baseMs: base, maxMs: 30_000, jitter: 0.3 }, attempt - 1);
        ctx.log(
          `retrying ${method} in ${delay} ms (attempt ${attempt}/${retries + 1}) after: ${lastProblem}`,
          "warn",
        );
        await sleep(delay, ctx.signal);
      }
      let res: Response;
      try {
        res = await fetch(step.url, { method, headers, body: body ?? null, signal: ctx.signal });
      } catch (err) {
        if (ctx.signal.aborted) throw ctx.signal.reason;
        lastProblem = describeError(err);
        continue;
      }
      const text = await boundedBody(res);
      ctx.log(`${method} ${step.url} → ${res.status}`);
      if (expected(res.status)) return { status: res.status, body: text };
      if (res.status === 429 || res.status >= 500) {
        lastProblem = `HTTP ${res.status}`;
        continue;
      }
      throw new NovaError(
        "NOVA_EXEC_STEP_FAILED",
        `${method} ${step.url} answered ${res.status}, expected ${step.expectStatus?.join(", ") ?? "2xx"}: ${truncate(text, 300)}`,
        { details: { status: res.status, body: truncate(text, 1000) } },
      );
    }
    throw new NovaError(
      "NOVA_EXEC_STEP_FAILED",
      `${method} ${step.url} failed after ${retries + 1} attempts: ${lastProblem}`,
      { retryable: true, details: { attempts: retries + 1 } },
    );
  },
};
