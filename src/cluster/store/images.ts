/** The images and image_locations tables. */
import { randomUUID } from "node:crypto";
import type { VmBootImage } from "../../api/types/agent.js";
import type { Image } from "../../api/types/images.js";
import { NovaError } from "../../lib/errors.js";
import type { Queryable, ReadQueryable } from "./db.js";

interface ImageRow {
  id: string;
  name: string;
  disk_digest: string;
  disk_format: "qcow2" | "raw";
  disk_virtual_bytes: number;
  kernel_digest: string | null;
  initrd_digest: string | null;
  cmdline: string;
  min_memory_mib: number;
  created_at: Date;
  hosts: string[] | null;
  host_ids: string[] | null;
}

/** An image with the ids of the hosts holding it. */
export interface ImageRecord extends Image {
  hostIds: string[];
}

const SELECT_IMAGES = `
  SELECT i.*,
    ARRAY(SELECT h.name FROM image_locations l JOIN hosts h ON h.id = l.host_id WHERE l.image_id = i.id ORDER BY h.name) AS hosts,
    ARRAY(SELECT l.host_id::text FROM image_locations l WHERE l.image_id = i.id) AS host_ids
  FROM images i`;

function toImage(row: ImageRow): ImageRecord {
  return {
    id: row.id,
    name: row.name,
    diskDigest: row.disk_digest,
    diskFormat: row.disk_format,
    diskVirtualBytes: Number(row.disk_virtual_bytes),
    kernelDigest: row.kernel_digest,
    initrdDigest: row.initrd_digest,
    cmdline: row.cmdline,
    minMemoryMiB: row.min_memory_mib,
    hosts: row.hosts ?? [],
    hostIds: row.host_ids ?? [],
    createdAt: new Date(row.created_at).toISOString(),
  };
}

/** The blobs a VM boots from (what an agent is sent to start it, or to receive it). */
export function bootImage(image: ImageRecord): VmBootImage {
  return {
    diskDigest: image.diskDigest,
    diskFormat: image.diskFormat,
    kernelDigest: image.kernelDigest,
    initrdDigest: image.initrdDigest,
    cmdline: image.cmdline,
  };
}

/** Strips internal fields for API output. */
export function publicImage(image: ImageRecord): Image {
  const { hostIds: _ids, ...rest } = image;
  return rest;
}

/** Every image, by name. */
export async function listImages(q: ReadQueryable): Promise<ImageRecord[]> {
  const { rows } = await q.query<ImageRow>(`${SELECT_IMAGES} ORDER BY i.name`);
  return rows.map(toImage);
}

/** An image by id or name, or undefined. */
export async function findImage(q: ReadQueryable, idOrName: string): Promise<ImageRecord | undefined> {
  const { rows } = await q.query<ImageRow>(`${SELECT_IMAGES} WHERE i.name = $1 OR i.id::text = $1`, [
    idOrName,
  ]);
  return rows[0] ? toImage(rows[0]) : undefined;
}

/** An image by id or name; NOVA_NOT_FOUND otherwise. */
export async function getImage(q: ReadQueryable, idOrName: string): Promise<ImageRecord> {
  const image = await findImage(q, idOrName);
  if (!image) {
    throw new NovaError(
      "NOVA_NOT_FOUND",
      `Image ${idOrName} not found. List images with: novacron image list`,
      {
        details: { image: idOrName },
      },
    );
  }
  return image;
}

/** Fields of a new image. */
export interface NewImage {
  name: string;
  diskDigest: string;
  diskFormat: "qcow2" | "raw";
  diskVirtualBytes: number;
  kernelDigest: string | null;
  initrdDigest: string | null;
  cmdline: string;
  minMemoryMiB: number;
}

/** Inserts an image; NOVA_CONFLICT when the name is taken. */
export async function insertImage(q: Queryable, image: NewImage): Promise<string> {
  const id = randomUUID();
  const { rowCount } = await q.query(
    `INSERT INTO images (id, name, disk_digest, disk_format, disk_virtual_bytes, kernel_digest, initrd_digest, cmdline, min_memory_mib)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING`,
    [
      id,
      image.name,
      image.diskDigest,
      image.diskFormat,
      image.diskVirtualBytes,
      image.kernelDigest,
      image.initrdDigest,
      image.cmdline,
      image.minMemoryMiB,
    ],
  );
  if (rowCount === 0) {
    throw new NovaError("NOVA_CONFLICT", `An image named ${image.name} already exists. Pick another name.`, {
      details: { image: image.name },
    });
  }
  return id;
}

/** Records that a host holds an image. */
export async function addImageLocation(q: Queryable, imageId: string, hostId: string): Promise<void> {
  await q.query("INSERT INTO image_locations (image_id, host_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", [
    imageId,
    hostId,
  ]);
}

/**
 * Brings image_locations in line with the blobs a host reports: an image is on a host
 * when all its blobs are in that host's store.
 */
export async function syncImageLocations(
  q: Queryable,
  hostId: string,
  digests: readonly string[],
): Promise<void> {
  await q.query(
    `DELETE FROM image_locations l USING images i
     WHERE l.image_id = i.id AND l.host_id = $1 AND NOT (
       i.disk_digest = ANY($2::text[]) AND (i.kernel_digest IS NULL OR i.kernel_digest = ANY($2::text[]))
       AND (i.initrd_digest IS NULL OR i.initrd_digest = ANY($2::text[])))`,
    [hostId, digests],
  );
  await q.query(
    `INSERT INTO image_locations (image_id, host_id)
     SELECT i.id, $1 FROM images i
     WHERE i.disk_digest = ANY($2::text[]) AND (i.kernel_digest IS NULL OR i.kernel_digest = ANY($2::text[]))
       AND (i.initrd_digest IS NULL OR i.initrd_digest = ANY($2::text[]))
     ON CONFLICT DO NOTHING`,
    [hostId, digests],
  );
}
