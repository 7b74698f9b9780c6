import { describe, expect, it } from "vitest";
import type { ObservedVm } from "../api/types/agent.js";
import { createAgentMetrics } from "./agent-metrics.js";

const vm = (id: number, state: ObservedVm["state"]): ObservedVm => ({
  id: `00000000-0000-4000-8000-${String(id).padStart(12, "0")}`,
  generation: 1,
  state,
  reason: "",
  pid: null,
});

describe("agent metrics", () => {
  it("counts VMs by state and gives each VM one series, dropping a VM that left", async () => {
    let vms = [vm(1, "running"), vm(2, "running"), vm(3, "stopped")];
    const m = createAgentMetrics({ vms: () => vms, certificates: () => [], processMetrics: false });
    let text = await m.registry.metrics();
    expect(text).toContain('novacron_agent_vms{state="running"} 2');
    expect(text).toContain('novacron_agent_vms{state="failed"} 0');
    expect(text).toContain(
      'novacron_agent_vm_state{vm_id="00000000-0000-4000-8000-000000000003",state="stopped"} 1',
    );
    vms = [vm(1, "stopping")];
    text = await m.registry.metrics();
    expect(text).toContain(
      'novacron_agent_vm_state{vm_id="00000000-0000-4000-8000-000000000001",state="stopping"} 1',
    );
    expect(text).not.toContain("000000000003");
    expect(text).not.toContain('vm_id="00000000-0000-4000-8000-000000000001",state="running"');
  });

  it("registers DWCP's metrics on the agent's registry", async () => {
    const m = createAgentMetrics({ vms: () => [], certificates: () => [], processMetrics: false });
    m.dwcp.setMode("internet");
    m.dwcp.predictionError.set(0.12);
    const text = await m.registry.metrics();
    expect(text).toContain('novacron_dwcp_mode{mode="internet"} 1');
    expect(text).toContain("novacron_dwcp_prediction_error_ratio 0.12");
  });
});
