import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { ERROR_CODES } from "./error-codes.js";
import { renderErrorDocs } from "./error-docs.js";
import { NovaError } from "./errors.js";

describe("error codes", () => {
  it("are documented in docs/errors.md exactly as the registry says (npm run docs:errors)", async () => {
    const doc = await readFile(new URL("../../docs/errors.md", import.meta.url), "utf8");
    expect(doc).toBe(renderErrorDocs());
  });

  it("all follow the NOVA_ naming and carry an HTTP error status", () => {
    for (const [code, e] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^NOVA_[A-Z0-9_]+$/);
      expect(e.status).toBeGreaterThanOrEqual(400);
      expect(e.description.length).toBeGreaterThan(10);
    }
  });

  it("serialise to the one API error shape", () => {
    const err = new NovaError("NOVA_NOT_FOUND", "VM x not found", { details: { vm: "x" } });
    expect(err.toJSON()).toEqual({
      error: { code: "NOVA_NOT_FOUND", message: "VM x not found", details: { vm: "x" } },
    });
    expect(err.status).toBe(404);
    expect(err.retryable).toBe(false);
  });
});
