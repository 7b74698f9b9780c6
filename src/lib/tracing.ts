/**
 * Tracing through the OpenTelemetry API (docs/tracing.md): spans, the
 * W3C `traceparent` carried on every HTTP call between NovaCron's processes, a stored
 * trace context for work that outlives the request that asked for it (a migration, an
 * execution), and the trace id in log lines. Only the API is imported here: without a
 * configured exporter (tracing-sdk.ts) every call is a no-op costing next to nothing.
 */
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";

/** Whether the environment asks for OTLP trace export. */
export function tracingConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  if ((env.OTEL_SDK_DISABLED ?? "").toLowerCase() === "true") return false;
  if ((env.OTEL_TRACES_EXPORTER ?? "").toLowerCase() === "none") return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT);
}

const tracer = () => trace.getTracer("novacron");

/** A value a span attribute may hold; undefined ones are left out. */
type AttributeInput = Record<string, string | number | boolean | undefined | null>;

function attributes(a: AttributeInput | undefined): Attributes {
  const out: Attributes = {};
  for (const [k, v] of Object.entries(a ?? {})) if (v !== undefined && v !== null) out[k] = v;
  return out;
}

/**
 * Runs `fn` in a new span, child of the active one (or of `parent`), ended when `fn`
 * settles; a failure is recorded on it and passed on.
 */
export async function inSpan<T>(
  name: string,
  attrs: AttributeInput | undefined,
  fn: (span: Span) => Promise<T>,
  parent?: Context,
): Promise<T> {
  return tracer().startActiveSpan(
    name,
    { attributes: attributes(attrs) },
    parent ?? context.active(),
    async (span) => {
      try {
        return await fn(span);
      } catch (err) {
        span.recordException(err instanceof Error ? err : String(err));
        span.setStatus({
          code: SpanStatusCode.ERROR,
          message: err instanceof Error ? err.message : String(err),
        });
        throw err;
      } finally {
        span.end();
      }
    },
  );
}

/** Starts a span the caller ends (for work whose end is an event, not a promise). */
export function startSpan(name: string, attrs?: AttributeInput, parent?: Context): Span {
  return tracer().startSpan(name, { attributes: attributes(attrs) }, parent ?? context.active());
}

/** Ends `span` as failed with `err`. */
export function failSpan(span: Span, err: unknown): void {
  span.recordException(err instanceof Error ? err : String(err));
  span.setStatus({ code: SpanStatusCode.ERROR, message: err instanceof Error ? err.message : String(err) });
  span.end();
}

/** Runs `fn` outside any trace (chores a traced run repeats many times, like polls). */
export function untraced<T>(fn: () => T): T {
  return context.with(ROOT_CONTEXT, fn);
}

/** Runs `fn` with `span` as the active span. */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Whether a recording span is active (work within a trace, not background chores). */
export function hasActiveSpan(): boolean {
  return trace.getActiveSpan()?.isRecording() === true;
}

/** Adds the active trace's `traceparent` (and `tracestate`) to outgoing HTTP headers. */
export function traceHeaders(headers: Record<string, string> = {}): Record<string, string> {
  propagation.inject(context.active(), headers);
  return headers;
}

/** The trace context incoming HTTP headers carry (the active one when they carry none). */
export function contextFromHeaders(headers: Record<string, string | string[] | undefined>): Context {
  return propagation.extract(context.active(), headers);
}

/**
 * The active trace context as one `traceparent` string, to store with work that runs
 * later (null when no span is recording: tracing is off or the caller sent none).
 */
export function currentTraceparent(): string | null {
  const headers: Record<string, string> = {};
  propagation.inject(context.active(), headers);
  return headers.traceparent ?? null;
}

/** The trace id a stored `traceparent` names (what the API shows), if any. */
export function traceIdOf(traceparent: string | null | undefined): string | undefined {
  return traceparent?.split("-")[1];
}

/** The context a stored `traceparent` names (the active one for null or garbage). */
export function contextFromTraceparent(traceparent: string | null | undefined): Context {
  if (!traceparent) return context.active();
  return propagation.extract(context.active(), { traceparent });
}

/** For pino's `mixin`: the active span's trace and span ids, so log lines join their trace. */
export function traceLogFields(): { trace_id?: string; span_id?: string } {
  const span = trace.getActiveSpan();
  const sc = span?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return {};
  return { trace_id: sc.traceId, span_id: sc.spanId };
}

/**
 * Spans of work whose start and end are separate calls (a DWCP session opened by one
 * request and dropped by another), by key. Opened only within a trace; bounded: past
 * `max` open ones the oldest is ended, so a caller that never closes cannot grow it.
 */
export class KeyedSpans {
  private readonly open_ = new Map<string, Span>();

  constructor(private readonly max = 256) {}

  /** Starts span `name` for `key`, child of the active span, unless one is open already. */
  open(key: string, name: string, attrs?: AttributeInput): void {
    const k = `${name}\u0000${key}`;
    if (this.open_.has(k) || !hasActiveSpan()) return;
    if (this.open_.size >= this.max) {
      const [oldest, span] = this.open_.entries().next().value as [string, Span];
      span.end();
      this.open_.delete(oldest);
    }
    this.open_.set(k, startSpan(name, attrs));
  }

  /** Ends span `name` of `key`, if open, with `attrs` added. */
  close(key: string, name: string, attrs?: AttributeInput): void {
    const k = `${name}\u0000${key}`;
    const span = this.open_.get(k);
    if (!span) return;
    this.open_.delete(k);
    span.setAttributes(attributes(attrs));
    span.end();
  }

  /** Ends every open span (the process stops). */
  closeAll(): void {
    for (const span of this.open_.values()) span.end();
    this.open_.clear();
  }
}
