/** Finds a free TCP port on an address (for QEMU's migration and NBD listeners). */
import net from "node:net";

/**
 * Asks the kernel for a free port on `host`. QEMU binds it a moment later; another
 * process could take it in between, in which case QEMU's listen fails with a clear error
 * and the migration is rolled back, which is acceptable for a rare race.
 */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
