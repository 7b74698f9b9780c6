import { describe, expect, it } from "vitest";
import { isTracedRoute } from "./app.js";

describe("which requests start a trace of their own", () => {
  it("the API's routes do; heartbeats, the event stream and unmatched paths do not", () => {
    expect(isTracedRoute("/v1/vms/:id/migrations")).toBe(true);
    expect(isTracedRoute("/v1/executions")).toBe(true);
    expect(isTracedRoute("/v1/agent/heartbeat")).toBe(false);
    expect(isTracedRoute("/v1/events")).toBe(false);
    expect(isTracedRoute("/metrics")).toBe(false);
    expect(isTracedRoute(undefined)).toBe(false);
  });
});
