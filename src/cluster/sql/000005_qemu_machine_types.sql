-- QEMU versions and machine types (issue 10: mixed fleets). Each host records the QEMU its
-- agent reports at registration and in heartbeats (version, version line, binary, the
-- versioned q35 machine types it offers and what its q35 alias resolves to), as one JSON
-- value in the wire shape (src/api/types/agent.ts QemuInfo). NULL: the agent predates
-- QEMU reporting, and nothing new is placed there.
ALTER TABLE hosts ADD COLUMN qemu jsonb;

-- Each VM's machine type, fixed for its life: pinned at create, else the concrete type
-- the q35 alias meant on the host it was first placed on. Every start and every migration
-- destination uses it. NULL only for VMs created before this migration, until their next
-- start or migration records it.
ALTER TABLE vms ADD COLUMN machine_type text
  CHECK (machine_type IS NULL OR machine_type ~ '^pc-q35-[0-9]{1,3}\.[0-9]{1,3}$');
