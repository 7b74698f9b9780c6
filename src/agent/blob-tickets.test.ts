import { describe, expect, it } from "vitest";
import { BlobTickets } from "./blob-tickets.js";

describe("blob download tickets", () => {
  it("are valid once, for their blob only", () => {
    const t = new BlobTickets();
    const ticket = t.issue("sha256:a");
    expect(t.redeem(ticket, "sha256:b")).toBe(false);
    expect(t.redeem(ticket, "sha256:a")).toBe(true);
    expect(t.redeem(ticket, "sha256:a")).toBe(false);
  });

  it("expire", () => {
    const t = new BlobTickets(-1);
    expect(t.redeem(t.issue("sha256:a"), "sha256:a")).toBe(false);
  });
});
