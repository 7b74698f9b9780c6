import { context, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { InMemorySpanExporter, NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  contextFromHeaders,
  contextFromTraceparent,
  currentTraceparent,
  hasActiveSpan,
  inSpan,
  KeyedSpans,
  traceHeaders,
  traceLogFields,
  tracingConfigured,
  untraced,
} from "./tracing.js";

describe("tracing helpers", () => {
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });

  beforeAll(() => provider.register({ propagator: new W3CTraceContextPropagator() }));
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
  });
  beforeEach(() => exporter.reset());

  const names = () => exporter.getFinishedSpans().map((s) => s.name);

  it("is configured by the standard OTLP variables only, and off when disabled", () => {
    expect(tracingConfigured({})).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: "https://collector:4318" })).toBe(true);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://c/v1/traces" })).toBe(true);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: "x", OTEL_SDK_DISABLED: "true" })).toBe(false);
    expect(tracingConfigured({ OTEL_EXPORTER_OTLP_ENDPOINT: "x", OTEL_TRACES_EXPORTER: "none" })).toBe(false);
  });

  it("nests spans, records a failure and passes it on", async () => {
    await expect(
      inSpan("outer", { a: 1, gone: undefined }, () =>
        inSpan("inner", undefined, async () => Promise.reject(new Error("boom"))),
      ),
    ).rejects.toThrow("boom");
    const [inner, outer] = exporter.getFinishedSpans();
    expect([inner?.name, outer?.name]).toEqual(["inner", "outer"]);
    expect(inner?.parentSpanContext?.spanId).toBe(outer?.spanContext().spanId);
    expect(inner?.status.code).toBe(2);
    expect(outer?.attributes).toEqual({ a: 1 });
  });

  it("carries a trace across processes as a traceparent header and as a stored string", async () => {
    let stored: string | null = null;
    let headers: Record<string, string> = {};
    await inSpan("request", undefined, async () => {
      stored = currentTraceparent();
      headers = traceHeaders({ "content-type": "application/json" });
    });
    expect(stored).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    expect(headers).toMatchObject({ "content-type": "application/json", traceparent: stored });
    // Later, elsewhere: the run continues the request's trace.
    await inSpan("run", undefined, async () => {}, contextFromTraceparent(stored));
    await inSpan("handler", undefined, async () => {}, contextFromHeaders(headers));
    const [request, run, handler] = exporter.getFinishedSpans();
    for (const s of [run, handler]) {
      expect(s?.spanContext().traceId).toBe(request?.spanContext().traceId);
      expect(s?.parentSpanContext?.spanId).toBe(request?.spanContext().spanId);
    }
  });

  it("starts a trace of its own for nothing or garbage stored", async () => {
    await inSpan("a", undefined, async () => {}, contextFromTraceparent(null));
    await inSpan("b", undefined, async () => {}, contextFromTraceparent("not-a-traceparent"));
    const [a, b] = exporter.getFinishedSpans();
    expect(a?.parentSpanContext).toBeUndefined();
    expect(b?.parentSpanContext).toBeUndefined();
    expect(a?.spanContext().traceId).not.toBe(b?.spanContext().traceId);
  });

  it("keeps polls out of a trace and says whether work is inside one", async () => {
    expect(hasActiveSpan()).toBe(false);
    expect(currentTraceparent()).toBeNull();
    expect(traceLogFields()).toEqual({});
    await inSpan("run", undefined, async () => {
      expect(hasActiveSpan()).toBe(true);
      expect(traceLogFields()).toMatchObject({ trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });
      untraced(() => {
        expect(hasActiveSpan()).toBe(false);
        expect(traceHeaders()).toEqual({});
      });
    });
  });

  it("keyed spans open only inside a trace, close once, and never hold more than their bound", async () => {
    const spans = new KeyedSpans(2);
    spans.open("m0", "session");
    spans.close("m0", "session");
    expect(names()).toEqual([]);
    await inSpan("run", undefined, async () => {
      spans.open("m1", "session", { id: "m1" });
      spans.open("m1", "session"); // already open: not a second span
      spans.open("m2", "session");
      spans.open("m3", "session"); // past the bound: the oldest (m1) ends
    });
    expect(names()).toEqual(["session", "run"]);
    spans.close("m2", "session", { bytes: 5 });
    spans.close("m2", "session");
    expect(exporter.getFinishedSpans().at(-1)?.attributes).toEqual({ bytes: 5 });
    spans.closeAll();
    expect(names()).toEqual(["session", "run", "session", "session"]);
  });
});
