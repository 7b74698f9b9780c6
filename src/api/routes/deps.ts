/** What route plugins receive: the store, the services, the auth guard and the API limits. */
import type { onRequestAsyncHookHandler } from "fastify";
import type { AgentConnector } from "../../cluster/agent-client.js";
import type { HostService } from "../../cluster/host-service.js";
import type { ImageService } from "../../cluster/image-service.js";
import type { PlacementService } from "../../cluster/placement-service.js";
import type { Store } from "../../cluster/store/store.js";
import type { UserService } from "../../cluster/user-service.js";
import type { VmService } from "../../cluster/vm-service.js";
import type { DrainService } from "../../migration/drain-service.js";
import type { MigrationService } from "../../migration/migration-service.js";
import type { Requirement } from "../auth.js";
import type { EventStreams } from "../event-streams.js";
import type { ApiLimits, RateBuckets } from "../limits.js";

/** Dependencies handed to each route plugin. */
export interface RouteDeps {
  store: Store;
  hosts: HostService;
  images: ImageService;
  vms: VmService;
  migrations: MigrationService;
  /** Hosts' maintenance drains. */
  drains: DrainService;
  /** Host labels, sites and weights, and placement groups. */
  placement: PlacementService;
  /** Users, logins and sessions. */
  users: UserService;
  /** Clients for the hosts' agents. */
  agents: AgentConnector;
  /** The cluster CA's fingerprint (join tokens carry it). */
  caFingerprint: string;
  /** An onRequest hook that authenticates the caller and checks the permission (before the body is read or validated). */
  guard: (requirement: Requirement) => onRequestAsyncHookHandler;
  /** Failed authentications per client address (a wrong password spends it too). */
  authFailures: RateBuckets;
  /** The open event streams (caps, and closing a revoked token's). */
  streams: EventStreams;
  /** The API's bounds. */
  limits: ApiLimits;
}
