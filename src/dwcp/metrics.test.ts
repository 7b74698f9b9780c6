import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { DwcpMetrics } from "./metrics.js";

describe("DWCP metrics", () => {
  it("exposes mode, streams, prediction and HDE ratios in Prometheus format", async () => {
    const registry = new Registry();
    const m = new DwcpMetrics(registry);
    m.setMode("internet");
    m.streams.set(6);
    m.predictedBandwidth.set(12.5e6);
    m.recordPages({
      pages: 100,
      zero: 30,
      full: 40,
      ref: 20,
      delta: 10,
      refilled: 0,
      bytesIn: 409600,
      bytesOut: 102400,
    });
    const text = await registry.metrics();
    expect(text).toContain('novacron_dwcp_mode{mode="internet"} 1');
    expect(text).toContain('novacron_dwcp_mode{mode="datacenter"} 0');
    expect(text).toContain("novacron_dwcp_streams 6");
    expect(text).toContain("novacron_dwcp_predicted_bandwidth_bytes_per_second 12500000");
    expect(text).toContain("novacron_dwcp_hde_compression_ratio 4");
    expect(text).toContain("novacron_dwcp_hde_dedup_ratio 0.2");
  });
});
