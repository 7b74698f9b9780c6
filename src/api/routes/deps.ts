/** What route plugins receive: the store, the services, the auth guard and the API limits. */
import type { preHandlerAsyncHookHandler } from "fastify";
import type { HostService } from "../../cluster/host-service.js";
import type { ImageService } from "../../cluster/image-service.js";
import type { Store } from "../../cluster/store/store.js";
import type { VmService } from "../../cluster/vm-service.js";
import type { MigrationService } from "../../migration/migration-service.js";
import type { Permission } from "../auth.js";
import type { EventStreams } from "../event-streams.js";
import type { ApiLimits } from "../limits.js";

/** Dependencies handed to each route plugin. */
export interface RouteDeps {
  store: Store;
  hosts: HostService;
  images: ImageService;
  vms: VmService;
  migrations: MigrationService;
  /** A preHandler that authenticates the caller and checks the permission. */
  guard: (permission: Permission) => preHandlerAsyncHookHandler;
  /** The open event streams (caps, and closing a revoked token's). */
  streams: EventStreams;
  /** The API's bounds. */
  limits: ApiLimits;
}
