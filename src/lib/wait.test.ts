import { describe, expect, it } from "vitest";
import { waitFor, withDeadline } from "./wait.js";

describe("withDeadline", () => {
  it("passes the value through when in time", async () => {
    await expect(withDeadline(Promise.resolve(7), 1000, () => new Error("late"))).resolves.toBe(7);
  });

  it("fails with the deadline's error when the promise is late", async () => {
    const never = new Promise<number>(() => {});
    await expect(withDeadline(never, 20, () => new Error("late"))).rejects.toThrow("late");
  });

  it("passes the promise's own failure through", async () => {
    await expect(
      withDeadline(Promise.reject(new Error("own")), 1000, () => new Error("late")),
    ).rejects.toThrow("own");
  });
});

describe("waitFor", () => {
  it("returns the first truthy value and names what it waited for on timeout", async () => {
    let n = 0;
    await expect(waitFor(() => (++n >= 3 ? n : false), { intervalMs: 1 })).resolves.toBe(3);
    await expect(waitFor(() => false, { timeoutMs: 20, intervalMs: 5, what: "the moon" })).rejects.toThrow(
      /the moon/,
    );
  });
});
