/**
 * Turns tracing on for a process when OTLP export is configured (docs/tracing.md,
 * "Tracing"): the standard `OTEL_EXPORTER_OTLP_ENDPOINT` or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (with `OTEL_EXPORTER_OTLP_HEADERS` for a
 * collector that wants credentials) — the variables every OpenTelemetry tool reads, so a
 * collector set up for others works unchanged. Spans leave in batches over OTLP/HTTP;
 * the batch queue is bounded (2048 spans, the SDK's default), so an unreachable collector
 * costs dropped spans, never memory.
 */
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchSpanProcessor, NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { tracingConfigured } from "./tracing.js";

/** A process's tracing, to flush before it exits. */
export interface Tracing {
  /** Whether spans are exported (false: the no-op API, nothing to flush). */
  readonly enabled: boolean;
  /** Sends what is buffered and stops; bounded by the exporter's own timeout. */
  shutdown(): Promise<void>;
}

const OFF: Tracing = { enabled: false, shutdown: async () => {} };

/**
 * Registers the global tracer provider for service `serviceName` (novacron-server,
 * novacron-agent, novacron-cli) when export is configured; otherwise leaves the no-op API.
 * `instance` names this process among its kind (a host name, a cluster name).
 */
export function startTracing(
  process: { serviceName: string; version: string; instance?: string },
  env: NodeJS.ProcessEnv = globalThis.process.env,
): Tracing {
  if (!tracingConfigured(env)) return OFF;
  const { serviceName, version, instance } = process;
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      "service.name": serviceName,
      "service.version": version,
      ...(instance ? { "service.instance.id": instance } : {}),
    }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter(), { scheduledDelayMillis: 1000 })],
  });
  provider.register({ propagator: new W3CTraceContextPropagator() });
  return { enabled: true, shutdown: () => provider.shutdown() };
}
