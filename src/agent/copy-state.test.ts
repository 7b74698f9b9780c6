import { describe, expect, it } from "vitest";
import { copyStateOf } from "./copy-state.js";

const qemu = (runState: string, migrationStatus = "none") => ({ runState, migrationStatus });

describe("copyStateOf", () => {
  it("is gone when this host has no QEMU for the VM (never had one, removed, or it died)", () => {
    expect(copyStateOf({ qemu: null })).toEqual({
      state: "gone",
      reason: "no QEMU for this VM on this host",
      qemu: null,
    });
    // A destination whose QEMU died keeps its record until removed: still gone.
    expect(copyStateOf({ qemu: null, incomingMigrationId: "m1" }).state).toBe("gone");
  });

  it("is running when QEMU runs the guest, whatever migration it took part in", () => {
    expect(copyStateOf({ qemu: qemu("running") }).state).toBe("running");
    // A source mid pre-copy.
    expect(copyStateOf({ qemu: qemu("running", "active"), outgoingMigrationId: "m1" }).state).toBe("running");
    // A VM that arrived by migration reports that migration completed for the rest of its life.
    expect(copyStateOf({ qemu: qemu("running", "completed") }).state).toBe("running");
    // A destination resumed by incoming/finish just before its record was cleared.
    expect(copyStateOf({ qemu: qemu("running", "completed"), incomingMigrationId: "m1" }).state).toBe(
      "running",
    );
  });

  it("is paused for a source after a completed outgoing migration", () => {
    const s = copyStateOf({ qemu: qemu("postmigrate", "completed"), outgoingMigrationId: "m1" });
    expect(s).toMatchObject({
      state: "paused",
      qemu: { runState: "postmigrate" },
      outgoingMigrationId: "m1",
    });
    // After an agent restart the outgoing record may be the only trace; the run state suffices.
    expect(copyStateOf({ qemu: qemu("postmigrate", "completed") }).state).toBe("paused");
    // Paused with the migration completed (QEMU versions that report paused).
    expect(copyStateOf({ qemu: qemu("paused", "completed"), outgoingMigrationId: "m1" }).state).toBe(
      "paused",
    );
  });

  it("is paused for a source stopped at its switch-over: it still holds the whole VM", () => {
    for (const [run, mig] of [
      ["paused", "pre-switchover"],
      ["finish-migrate", "device"],
      ["paused", "failed"],
    ] as const)
      expect(copyStateOf({ qemu: qemu(run, mig), outgoingMigrationId: "m1" }).state, `${run}/${mig}`).toBe(
        "paused",
      );
  });

  it("is paused for a destination whose incoming migration completed and that was not resumed", () => {
    const s = copyStateOf({ qemu: qemu("paused", "completed"), incomingMigrationId: "m1" });
    expect(s).toMatchObject({ state: "paused", incomingMigrationId: "m1" });
    expect(s.reason).toMatch(/incoming migration completed/);
  });

  it("is incomplete for a destination whose relay failed, though QEMU loaded a whole-looking stream", () => {
    const s = copyStateOf({
      qemu: qemu("paused", "completed"),
      incomingMigrationId: "m1",
      incomingRelayFailure: "The DWCP session lost all connections",
    });
    expect(s).toMatchObject({ state: "incomplete", incomingMigrationId: "m1" });
    expect(s.reason).toMatch(/relay failed .*lost all connections/);
    expect(s).not.toHaveProperty("incomingRelayFailure");
    // Once it runs, it runs: a relay failure afterwards changes nothing.
    const running = copyStateOf({
      qemu: qemu("running", "completed"),
      incomingMigrationId: "m1",
      incomingRelayFailure: "x",
    });
    expect(running.state).toBe("running");
  });

  it("is incomplete for a destination waiting for or receiving the stream", () => {
    for (const mig of ["none", "setup", "active", "postcopy-active"])
      expect(copyStateOf({ qemu: qemu("inmigrate", mig), incomingMigrationId: "m1" }).state, mig).toBe(
        "incomplete",
      );
    // Even without its record (inmigrate says it is a destination).
    expect(copyStateOf({ qemu: qemu("inmigrate", "active") }).state).toBe("incomplete");
  });

  it("is incomplete for a destination that left inmigrate without completing (it is not whole)", () => {
    for (const mig of ["postcopy-active", "postcopy-paused", "active", "failed"]) {
      const s = copyStateOf({ qemu: qemu("paused", mig), incomingMigrationId: "m1" });
      expect(s.state, mig).toBe("incomplete");
      expect(s.reason).toContain(`migration ${mig}`);
    }
  });
});
