/**
 * The host's DWCP page store: the page cache the destination's relays fill and dedupe
 * against, its inventory (sent once per incoming session), and per VM the last version
 * this host sent or received of each memory page and disk block (`history/<vm>.bin`,
 * `<vm>.disk.bin`), the bases for deltas. A cache found with damaged pages after a relay
 * failed is started afresh, so the next try does not trip over the same pages.
 */
import { mkdirSync, rmSync } from "node:fs";
import path from "node:path";
import type { Logger } from "pino";
import type { Channel } from "../../dwcp/amst/channel.js";
import { PageHistory } from "../../dwcp/hde/history.js";
import { PageCache } from "../../dwcp/hde/page-cache.js";
import { sendInventory } from "../../dwcp/hde/receiver-mirror.js";

/** Files where a host keeps a VM's last-sent or last-received versions. */
export interface HistoryFiles {
  memory: string;
  disk: string;
}

/** A VM's memory and disk histories, loaded against the current cache. */
export interface VmHistories {
  memory: PageHistory;
  disk: PageHistory;
}

/** One per agent, under `<dataDir>/dwcp`. */
export class DwcpPageStore {
  private cache: PageCache;
  private readonly cacheDir: string;
  private readonly historyDir: string;
  private readonly cacheBytes: number;

  constructor(
    dataDir: string,
    /** Size cap of the page cache. @defaultValue 4 GiB */
    cacheBytes: number | undefined,
    private readonly log: Logger,
  ) {
    const dir = path.join(dataDir, "dwcp");
    this.historyDir = path.join(dir, "history");
    mkdirSync(this.historyDir, { recursive: true });
    this.cacheDir = path.join(dir, "page-cache");
    this.cacheBytes = cacheBytes ?? 4 * 1024 ** 3;
    this.cache = new PageCache(this.cacheDir, this.cacheBytes);
  }

  /** The cache relays use now (a reset replaces it; take it when a relay starts). */
  get current(): PageCache {
    return this.cache;
  }

  /** This host's last memory-page and disk-block versions of a VM, the bases for deltas. */
  loadHistories(vmId: string): VmHistories {
    const files = this.historyFiles(vmId);
    const memory = new PageHistory(this.cache);
    memory.load(files.memory);
    const disk = new PageHistory(this.cache);
    disk.load(files.disk);
    return { memory, disk };
  }

  /** Where a VM's histories are saved. */
  historyFiles(vmId: string): HistoryFiles {
    return {
      memory: path.join(this.historyDir, `${vmId}.bin`),
      disk: path.join(this.historyDir, `${vmId}.disk.bin`),
    };
  }

  /** Announces the current cache's inventory on a session's inventory channel. */
  sendInventory(channel: Channel): Promise<void> {
    return sendInventory(channel, this.cache);
  }

  /**
   * Watches a relay that reads the current cache: if it fails and the cache has gained
   * damaged pages meanwhile (each is detected by its hash and never used), the cache
   * starts empty. A cache already replaced is left alone.
   */
  resetIfDamagedAfter(relayDone: Promise<unknown>): void {
    const cache = this.cache;
    const corruptBefore = cache.stats().corrupt;
    relayDone.catch(() => {
      if (this.cache === cache && cache.stats().corrupt > corruptBefore) this.reset();
    });
  }

  private reset(): void {
    this.log.warn({ dir: this.cacheDir }, "page cache had damaged pages; starting it empty");
    this.cache.close();
    rmSync(this.cacheDir, { recursive: true, force: true });
    this.cache = new PageCache(this.cacheDir, this.cacheBytes);
  }

  /** Closes the cache. */
  close(): void {
    this.cache.close();
  }
}
