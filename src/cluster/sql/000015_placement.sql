-- Placement wired into the server (issue 17, items 1 and 3; docs/placement.md): a host's
-- site and the operator's weight for it (its labels are in hosts.labels since 000001),
-- placement groups (affinity rules) and their member VMs, and the constraints a VM was
-- created with. A drain's move that fails is retried: its entry counts the attempts.
ALTER TABLE hosts ADD COLUMN site text;
-- The operator's preference for a host, -1..1 (ITP's `operator` scorer); 0: none.
ALTER TABLE hosts ADD COLUMN placement_weight double precision NOT NULL DEFAULT 0
  CHECK (placement_weight >= -1 AND placement_weight <= 1);

CREATE TABLE placement_groups (
  id           uuid PRIMARY KEY,
  name         text NOT NULL UNIQUE,
  policy       text NOT NULL CHECK (policy IN ('affinity', 'anti-affinity')),
  scope        text NOT NULL CHECK (scope IN ('host', 'site')),
  enforcement  text NOT NULL CHECK (enforcement IN ('hard', 'soft')),
  -- Bumped by every change (members added or removed): a compare-and-set fences edits.
  generation   integer NOT NULL DEFAULT 1,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE placement_group_members (
  group_id  uuid NOT NULL REFERENCES placement_groups (id) ON DELETE CASCADE,
  -- A deleted VM leaves its groups.
  vm_id     uuid NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
  PRIMARY KEY (group_id, vm_id)
);
CREATE INDEX placement_group_members_vm_idx ON placement_group_members (vm_id);

-- Labels a host must carry (all of them) and the site it must run in, fixed at create.
ALTER TABLE vms ADD COLUMN host_selector jsonb NOT NULL DEFAULT '{}'::jsonb;
ALTER TABLE vms ADD COLUMN required_site text;

-- How many times a drain tried to move the VM; a failed move is retried a bounded number of times.
ALTER TABLE host_drain_vms ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE host_drain_vms ADD COLUMN last_attempt_at timestamptz;
