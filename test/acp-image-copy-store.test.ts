// The destination's side of an image copy for a hand-off (src/migration/acp-image-copy.ts)
// against a real store (PGlite), its agent faked: a pull running or cut short answers
// `pending` (the source asks again), a finished one is ready and recorded with the arriving
// VM's transaction under the source's name (suffixed when the name is taken here), a blob
// with another digest refuses the hand-off with NOVA_IMAGE_DIGEST_MISMATCH and records
// nothing, and without an offer a missing image is NOVA_NOT_FOUND as before.
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { HandoffVmSpec } from "../src/api/types/acp.js";
import type { AgentImagePullStatus } from "../src/api/types/agent.js";
import type { AgentConnector } from "../src/cluster/agent-client.js";
import { listImages } from "../src/cluster/store/images.js";
import type { Store } from "../src/cluster/store/store.js";
import { isNovaError } from "../src/lib/errors.js";
import { ImageCopies, recordCopiedImage } from "../src/migration/acp-image-copy.js";
import { createPgliteDatabase, storePerSuite } from "./helpers/databases.js";
import { addHost, addImage, TEST_IMAGE } from "./helpers/store-fixtures.js";

const DIGEST = `sha256:${"a".repeat(64)}`;

function spec(diskDigest: string, offer = true): HandoffVmSpec {
  return {
    name: "arriving",
    vcpus: 1,
    memoryMiB: 64,
    kernelArgs: "",
    targetHost: "w1",
    image: { name: "img", diskDigest, ...TEST_IMAGE },
    ...(offer
      ? {
          imageOffer: {
            endpoint: { host: "127.0.0.1", port: 9 },
            token: "t",
            blobs: [{ digest: diskDigest, kind: "disk" as const, sizeBytes: 4096 }],
          },
        }
      : {}),
  };
}

/** An agent connector whose every host answers pulls with `status` (or throws it). */
function agents(status: () => AgentImagePullStatus): AgentConnector {
  return { client: () => ({ pullImage: async () => status() }) } as unknown as AgentConnector;
}

const pull = (s: Partial<AgentImagePullStatus>): AgentImagePullStatus => ({
  state: "running",
  logicalBytes: 4096,
  wireBytes: 100,
  pages: 1,
  pagesDeduplicated: 0,
  ...s,
});

describe("image copy for a hand-off, destination side", () => {
  let store!: Store;
  storePerSuite(createPgliteDatabase, (s) => {
    store = s;
  });

  it("answers pending while the pull runs or was cut short, then ready; records the image under a free name", async () => {
    const hostId = await addHost(store.db, "w1");
    await addImage(store.db, "img"); // another image here already has the source's name
    let status = pull({ state: "running" });
    const copies = new ImageCopies(
      store,
      agents(() => status),
    );
    const id = randomUUID();
    expect(await copies.ensure(id, "ca", spec(DIGEST))).toMatchObject({ kind: "pending" });
    status = pull({ state: "failed", code: "NOVA_HOST_UNREACHABLE", message: "link down" });
    expect(await copies.ensure(id, "ca", spec(DIGEST))).toMatchObject({ kind: "pending" });
    expect((await listImages(store.read)).map((i) => i.name)).toEqual(["img"]);
    status = pull({ state: "done" });
    const ready = await copies.ensure(id, "ca", spec(DIGEST));
    expect(ready).toEqual({
      kind: "ready",
      copied: { hostId, logicalBytes: 4096, wireBytes: 100, pages: 1, pagesDeduplicated: 0 },
    });
    const event = await store.write(async (tx) =>
      recordCopiedImage(tx, spec(DIGEST).image, ready.kind === "ready" ? ready.copied! : ({} as never)),
    );
    expect(event).toMatchObject({
      type: "image.copied",
      data: { name: "img-2", host: "w1", wireBytes: 100 },
    });
    const images = await listImages(store.read);
    expect(images.map((i) => [i.name, i.diskDigest, i.hostIds])).toEqual([
      ["img", "sha256:d", []],
      ["img-2", DIGEST, [hostId]],
    ]);
    // Held now on the named host: nothing to copy.
    expect(await copies.ensure(randomUUID(), "ca", spec(DIGEST))).toEqual({ kind: "ready" });
  });

  it("refuses a blob with another digest and records nothing", async () => {
    const other = `sha256:${"b".repeat(64)}`;
    const copies = new ImageCopies(
      store,
      agents(() => pull({ state: "failed", code: "NOVA_IMAGE_DIGEST_MISMATCH", message: "other content" })),
    );
    const err = await copies.ensure(randomUUID(), "ca", spec(other)).catch((e: unknown) => e);
    expect(isNovaError(err, "NOVA_IMAGE_DIGEST_MISMATCH"), String(err)).toBe(true);
    expect((await listImages(store.read)).filter((i) => i.diskDigest === other)).toEqual([]);
  });

  it("without an offer, a missing image is NOVA_NOT_FOUND", async () => {
    const copies = new ImageCopies(
      store,
      agents(() => pull({})),
    );
    const err = await copies
      .ensure(randomUUID(), "ca", spec(`sha256:${"c".repeat(64)}`, false))
      .catch((e) => e);
    expect(isNovaError(err, "NOVA_NOT_FOUND"), String(err)).toBe(true);
  });
});
