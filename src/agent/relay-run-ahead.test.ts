import { describe, expect, it } from "vitest";
import { RUN_AHEAD_MAX, RUN_AHEAD_MIN, runAheadFor } from "./relay-run-ahead.js";

const MiB = 1024 * 1024;

describe("the memory relay's run-ahead", () => {
  it.each([
    ["setup, nothing known yet (pass 0, 0 remaining): the small bound", 0, 0, RUN_AHEAD_MIN],
    ["early in the first pass (1 GiB left): the large bound", 1, 1024 * MiB, RUN_AHEAD_MAX],
    ["first pass, 20 MiB left: what is left", 1, 20 * MiB, 20 * MiB],
    ["first pass, 2 MiB left: never below the small bound", 1, 2 * MiB, RUN_AHEAD_MIN],
    ["second pass with much left (a busy guest): the small bound", 2, 500 * MiB, RUN_AHEAD_MIN],
    ["a later pass: the small bound", 7, 64 * MiB, RUN_AHEAD_MIN],
  ])("%s", (_name, pass, remaining, expected) => {
    expect(runAheadFor(pass, remaining)).toBe(expected);
  });
});
