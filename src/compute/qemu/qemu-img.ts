/**
 * The qemu-img operations NovaCron needs: reading an image's format and sizes, and creating
 * the qcow2 overlay a VM writes to on top of a read-only base image.
 */
import { execFile } from "node:child_process";
import { access, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { NovaError } from "../../lib/errors.js";

const execFileAsync = promisify(execFile);

const QEMU_IMG = "qemu-img";

/** What qemu-img knows about an image file. */
export interface ImageInfo {
  /** The detected format, e.g. "qcow2" or "raw". */
  format: string;
  /** Size the guest sees. */
  virtualSizeBytes: number;
  /** Bytes allocated on the host. */
  actualSizeBytes: number;
  /** The backing file a qcow2 overlay depends on, as recorded in the image, if any. */
  backingFile?: string;
}

interface ExecFailure {
  code?: number | string;
  stderr?: string;
  message: string;
}

async function runQemuImg(args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(QEMU_IMG, args, { maxBuffer: 16 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as ExecFailure;
    if (e.code === "ENOENT") {
      throw new NovaError("NOVA_CONFIG", `Failed running ${QEMU_IMG}: not installed or not on PATH`, {
        cause: err,
      });
    }
    const stderr = (e.stderr ?? "").trim().split("\n").slice(-3).join(" | ");
    throw new NovaError("NOVA_UNPROCESSABLE", `qemu-img ${args[0]} failed: ${stderr || e.message}`, {
      details: { args, stderr },
      cause: err,
    });
  }
}

async function mustExist(file: string): Promise<void> {
  try {
    await stat(file);
  } catch {
    throw new NovaError("NOVA_NOT_FOUND", `Image file ${file} does not exist`, { details: { path: file } });
  }
}

/**
 * Reads an image's format and sizes. `-U` (force-share) lets this read images a running
 * QEMU holds locked; the values are metadata, so a concurrent writer cannot mislead us.
 */
export async function qemuImgInfo(file: string): Promise<ImageInfo> {
  await mustExist(file);
  const stdout = await runQemuImg(["info", "--output=json", "-U", file]);
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(stdout) as Record<string, unknown>;
  } catch {
    throw new NovaError("NOVA_QEMU_ERROR", `qemu-img info printed invalid JSON for ${file}`, {
      details: { stdout: stdout.slice(0, 500) },
    });
  }
  const info: ImageInfo = {
    format: String(parsed.format),
    virtualSizeBytes: Number(parsed["virtual-size"]),
    actualSizeBytes: Number(parsed["actual-size"] ?? 0),
  };
  // As recorded in the image: qemu-img's "full" variant resolves relative names against
  // wherever the file sits now, which misleads for a copy in a temp dir.
  const backing = parsed["backing-filename"];
  if (typeof backing === "string" && backing.length > 0) info.backingFile = backing;
  return info;
}

/**
 * Creates a qcow2 overlay at `overlayPath` backed by `basePath` (recorded with its format,
 * so QEMU never probes it), optionally larger than the base. Refuses to overwrite.
 */
export async function createOverlay(
  basePath: string,
  baseFormat: string,
  overlayPath: string,
  sizeBytes?: number,
): Promise<void> {
  // qemu-img stores the backing path as given; a relative one would resolve against the
  // overlay's directory, not ours.
  for (const [field, value] of [
    ["basePath", basePath],
    ["overlayPath", overlayPath],
  ] as const) {
    if (!path.isAbsolute(value)) {
      throw new NovaError("NOVA_UNPROCESSABLE", `${field} must be absolute, got "${value}"`, {
        details: { field, value },
      });
    }
  }
  if (baseFormat !== "qcow2" && baseFormat !== "raw") {
    throw new NovaError("NOVA_UNPROCESSABLE", `Base image format must be qcow2 or raw, got "${baseFormat}"`, {
      details: { baseFormat },
    });
  }
  const base = await qemuImgInfo(basePath);
  if (base.format !== baseFormat) {
    throw new NovaError(
      "NOVA_UNPROCESSABLE",
      `Base image ${basePath} is ${base.format}, not the ${baseFormat} it was recorded as`,
      { details: { basePath, recordedFormat: baseFormat, detectedFormat: base.format } },
    );
  }
  if (sizeBytes !== undefined) {
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < base.virtualSizeBytes) {
      throw new NovaError(
        "NOVA_UNPROCESSABLE",
        `Overlay size ${sizeBytes} must be a whole number of bytes no smaller than the base image (${base.virtualSizeBytes})`,
        { details: { sizeBytes, baseVirtualSizeBytes: base.virtualSizeBytes } },
      );
    }
  }
  // qemu-img create silently truncates an existing file, which would destroy a VM's disk.
  const exists = await access(overlayPath).then(
    () => true,
    () => false,
  );
  if (exists) {
    throw new NovaError("NOVA_CONFLICT", `Overlay ${overlayPath} already exists`, {
      details: { path: overlayPath },
    });
  }
  const args = ["create", "-q", "-f", "qcow2", "-b", basePath, "-F", baseFormat, overlayPath];
  if (sizeBytes !== undefined) args.push(String(sizeBytes));
  await runQemuImg(args);
}
