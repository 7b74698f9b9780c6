/**
 * Hands the channels a DWCP peer opens to whoever waits for their label, so several
 * relays (memory, disk connections) can share one session: DwcpSession.accept() has a
 * single waiter, this owns the one accept loop.
 */

import type { Channel } from "../../dwcp/amst/channel.js";
import type { DwcpSession } from "../../dwcp/amst/session.js";
import { NovaError } from "../../lib/errors.js";

type Waiter = { resolve: (c: Channel) => void; reject: (e: Error) => void };

/** Takes a channel, or returns false to leave it for take(). */
type PrefixHandler = (c: Channel) => boolean | undefined;

/** Routes accepted channels by exact label or by label prefix. */
export class ChannelRouter {
  private readonly arrived = new Map<string, Channel>();
  private readonly waiters = new Map<string, Waiter>();
  private readonly prefixes: { prefix: string; onChannel: PrefixHandler }[] = [];
  private failure: Error | null = null;

  constructor(private readonly session: DwcpSession) {
    void this.loop();
  }

  private async loop(): Promise<void> {
    for (;;) {
      let ch: Channel;
      try {
        ch = await this.session.accept();
      } catch (err) {
        this.failure = err instanceof Error ? err : new Error(String(err));
        for (const w of this.waiters.values()) w.reject(this.failure);
        this.waiters.clear();
        return;
      }
      const w = this.waiters.get(ch.label);
      if (w) {
        this.waiters.delete(ch.label);
        w.resolve(ch);
        continue;
      }
      const p = this.prefixes.find((x) => ch.label.startsWith(x.prefix));
      if (!p || p.onChannel(ch) === false) this.arrived.set(ch.label, ch);
    }
  }

  /** The channel the peer opened (or will open) with `label`. */
  take(label: string): Promise<Channel> {
    const ch = this.arrived.get(label);
    if (ch) {
      this.arrived.delete(label);
      return Promise.resolve(ch);
    }
    if (this.failure) return Promise.reject(this.failure);
    if (this.waiters.has(label))
      return Promise.reject(new NovaError("NOVA_ILLEGAL_STATE", `Channel "${label}" is already awaited`));
    return new Promise((resolve, reject) => this.waiters.set(label, { resolve, reject }));
  }

  /**
   * Calls `onChannel` for every channel whose label starts with `prefix` (also ones already
   * arrived); a handler that returns false leaves the channel for take().
   */
  onPrefix(prefix: string, onChannel: PrefixHandler): void {
    this.prefixes.push({ prefix, onChannel });
    for (const [label, ch] of [...this.arrived]) {
      if (!label.startsWith(prefix)) continue;
      this.arrived.delete(label);
      if (onChannel(ch) === false) this.arrived.set(label, ch);
    }
  }
}
