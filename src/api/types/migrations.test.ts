import { Value } from "@sinclair/typebox/value";
import { describe, expect, it } from "vitest";
import { AgentMigrationTuning } from "./agent.js";
import {
  agentMigrationTuning,
  MIGRATION_OPTION_DEFAULTS,
  MigrationOptions,
  resolveMigrationOptions,
} from "./migrations.js";

describe("migration options", () => {
  it("publishes the same defaults in the schema as the constant", () => {
    const props = MigrationOptions.properties;
    for (const [key, value] of Object.entries(MIGRATION_OPTION_DEFAULTS)) {
      expect(props[key as keyof typeof props].default, key).toBe(value);
    }
  });

  it("fills every unset option with its default and keeps what was set", () => {
    expect(resolveMigrationOptions({})).toEqual({
      transport: "auto",
      downtimeLimitMs: 300,
      autoConverge: true,
      postcopy: false,
      timeoutSeconds: 600,
    });
    expect(
      resolveMigrationOptions({ autoConverge: false, downtimeLimitMs: 50, maxBandwidthMiBps: 4 }),
    ).toMatchObject({ autoConverge: false, downtimeLimitMs: 50, maxBandwidthMiBps: 4, postcopy: false });
  });

  it("sends the agent defaults, no bandwidth cap and no multifd when nothing is set", () => {
    const t = agentMigrationTuning({});
    expect(t).toEqual({ downtimeLimitMs: 300, autoConverge: true, postcopy: false });
    expect(Value.Check(AgentMigrationTuning, t)).toBe(true);
  });

  it("converts MiB/s to bytes/s and multifd channels with compression none unless set", () => {
    expect(agentMigrationTuning({ maxBandwidthMiBps: 3, multifdChannels: 4 })).toEqual({
      downtimeLimitMs: 300,
      autoConverge: true,
      postcopy: false,
      maxBandwidthBytesPerSec: 3 * 1048576,
      multifd: { channels: 4, compression: "none" },
    });
    expect(
      agentMigrationTuning({ multifdChannels: 2, multifdCompression: "zstd", postcopy: false }).multifd,
    ).toEqual({ channels: 2, compression: "zstd" });
  });

  it("ignores multifd compression without channels", () => {
    expect(agentMigrationTuning({ multifdCompression: "zstd" }).multifd).toBeUndefined();
  });
});
