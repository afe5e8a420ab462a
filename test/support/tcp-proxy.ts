import net from 'node:net';

/** Which way bytes flow through the proxy: from the client under test, or back to it. */
export type ProxyDirection = 'toServer' | 'toClient';

const DIRECTIONS: readonly ProxyDirection[] = ['toServer', 'toClient'];

/** Bytes queued in one direction (for latency or a throttle) before reading from the sender stops. */
const HIGH_WATER_BYTES = 1024 * 1024;

/** What the proxy does to the bytes of one direction. */
interface DirectionFault {
  /** Bytes are read and thrown away: the sender's writes succeed, the peer hears nothing. */
  drop: boolean;
  latencyMs: number;
  /** Undefined: as fast as the sockets go. */
  bytesPerSecond: number | undefined;
}

/** A hold armed by `holdAt`: the first chunk containing `marker` stops its direction there. */
interface Hold {
  readonly direction: ProxyDirection;
  readonly marker: Buffer;
  /** The link it stopped, once the marker came; released links go on. */
  link: Link | undefined;
  released: boolean;
  reached: () => void;
}

/** Counters of one direction, over every connection. */
export interface DirectionCounts {
  forwarded: number;
  dropped: number;
  /** Chunks held back for latency or a throttle before being forwarded. */
  delayed: number;
}

/**
 * One direction of one connection: reads from `source`, applies the direction's fault, writes to
 * `sink` in order. Replaces `pipe()` so that bytes can be held back or thrown away without the
 * sockets noticing.
 */
class Link {
  readonly #source: net.Socket;
  readonly #sink: net.Socket;
  readonly #faults: Record<ProxyDirection, DirectionFault>;
  readonly #direction: ProxyDirection;
  readonly #counts: DirectionCounts;
  readonly #isPaused: () => boolean;
  readonly #holds: Set<Hold>;
  readonly #queue: Array<{ chunk: Buffer; due: number }> = [];
  #queuedBytes = 0;
  #throttleFreeAt = 0;
  #timer: NodeJS.Timeout | undefined;
  #sinkFull = false;

  constructor(
    source: net.Socket,
    sink: net.Socket,
    faults: Record<ProxyDirection, DirectionFault>,
    direction: ProxyDirection,
    counts: DirectionCounts,
    isPaused: () => boolean,
    holds: Set<Hold>,
  ) {
    this.#source = source;
    this.#sink = sink;
    this.#faults = faults;
    this.#direction = direction;
    this.#counts = counts;
    this.#isPaused = isPaused;
    this.#holds = holds;
    source.on('data', (chunk: Buffer) => this.#onData(chunk));
    sink.on('drain', () => {
      this.#sinkFull = false;
      this.#pump();
    });
  }

  #onData(chunk: Buffer): void {
    const fault = this.#faults[this.#direction];
    if (fault.drop) {
      this.#counts.dropped += chunk.length;
      return;
    }
    for (const hold of this.#holds) {
      if (hold.link || hold.direction !== this.#direction || !chunk.includes(hold.marker)) continue;
      hold.link = this;
      hold.reached();
    }
    const now = performance.now();
    let due = now + fault.latencyMs;
    const bps = fault.bytesPerSecond;
    if (bps !== undefined) {
      // The chunk leaves once the throttle has sent everything before it.
      const start = Math.max(due, this.#throttleFreeAt);
      this.#throttleFreeAt = start + (chunk.length / bps) * 1000;
      due = this.#throttleFreeAt;
    }
    if (due > now || this.#queue.length > 0) this.#counts.delayed += 1;
    this.#queue.push({ chunk, due });
    this.#queuedBytes += chunk.length;
    this.#pump();
  }

  /** Writes every chunk whose time has come, in order, as far as the sink takes them. */
  #pump(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (this.#queue.length > 0 && !this.#sinkFull && !this.#isPaused() && !this.#isHeld()) {
      const head = this.#queue[0]!;
      const wait = head.due - performance.now();
      if (wait > 0) {
        this.#timer = setTimeout(() => this.#pump(), wait);
        break;
      }
      this.#queue.shift();
      this.#queuedBytes -= head.chunk.length;
      if (this.#sink.destroyed) continue;
      this.#counts.forwarded += head.chunk.length;
      if (!this.#sink.write(head.chunk)) this.#sinkFull = true;
    }
    this.updateFlow();
  }

  #isHeld(): boolean {
    for (const hold of this.#holds) if (hold.link === this && !hold.released) return true;
    return false;
  }

  /** Reads from the source only while nothing holds this direction back. */
  updateFlow(): void {
    if (this.#source.destroyed) return;
    const hold =
      this.#isPaused() || this.#isHeld() || this.#sinkFull || this.#queuedBytes > HIGH_WATER_BYTES;
    if (hold) this.#source.pause();
    else this.#source.resume();
  }

  /** Picks up again after a pause or a fault change. */
  kick(): void {
    this.#pump();
  }

  dispose(): void {
    clearTimeout(this.#timer);
    this.#queue.length = 0;
    this.#queuedBytes = 0;
  }
}

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  readonly links: readonly Link[];
  /** Faults of this connection alone (a blackholed one), else the proxy's. */
  readonly faults: Record<ProxyDirection, DirectionFault>;
  /** The client never hears of anything again, not even of the server closing. */
  blackholed: boolean;
}

/**
 * A TCP proxy on loopback between a client under test and a real server, so a test can cut,
 * pause, reset, slow down or half-close one connection without touching the server or anyone
 * else's connections. Faults apply to open connections and to those accepted later.
 */
export class TcpProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<Pair>();
  readonly #faults: Record<ProxyDirection, DirectionFault> = {
    toServer: { drop: false, latencyMs: 0, bytesPerSecond: undefined },
    toClient: { drop: false, latencyMs: 0, bytesPerSecond: undefined },
  };
  #paused = false;
  #refusing = false;
  readonly #holds = new Set<Hold>();
  /** Connections accepted so far. */
  accepted = 0;
  /** Bytes forwarded, dropped and delayed, per direction. */
  readonly counts: Readonly<Record<ProxyDirection, DirectionCounts>> = {
    toServer: { forwarded: 0, dropped: 0, delayed: 0 },
    toClient: { forwarded: 0, dropped: 0, delayed: 0 },
  };

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** @param listenPort a port of its own by default; a given one brings a service up there. */
  static async start(targetHost: string, targetPort: number, listenPort = 0): Promise<TcpProxy> {
    const proxy = new TcpProxy({ host: targetHost, port: targetPort });
    await new Promise<void>((resolve) => proxy.#server.listen(listenPort, '127.0.0.1', resolve));
    return proxy;
  }

  /** A loopback port nothing listens on now: a service that is down, until a proxy starts there. */
  static async freePort(): Promise<number> {
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    return port;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** Rewrites a URL so that it goes through the proxy. */
  url(original: string): string {
    const url = new URL(original);
    url.hostname = '127.0.0.1';
    url.port = String(this.port);
    return url.toString();
  }

  get openConnections(): number {
    return this.#pairs.size;
  }

  #accept(client: net.Socket): void {
    if (this.#refusing) {
      // Accepted by the kernel, then dropped: the client sees its connection closed at once.
      client.destroy();
      return;
    }
    this.accepted += 1;
    const upstream = net.connect(this.#target.port, this.#target.host);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const isPaused = () => this.#paused;
    // A proxy-wide fault object shared by reference, so changes reach open connections; a
    // blackholed connection gets objects of its own.
    const faults = { toServer: this.#faults.toServer, toClient: this.#faults.toClient };
    const links = [
      new Link(client, upstream, faults, 'toServer', this.counts.toServer, isPaused, this.#holds),
      new Link(upstream, client, faults, 'toClient', this.counts.toClient, isPaused, this.#holds),
    ];
    const pair: Pair = { client, upstream, links, faults, blackholed: false };
    this.#pairs.add(pair);
    for (const link of links) link.updateFlow();
    const close = () => {
      if (!this.#pairs.delete(pair)) return;
      for (const link of links) link.dispose();
      client.destroy();
      upstream.destroy();
    };
    // A server closing a blackholed connection sends a FIN that never arrives: the client
    // keeps its half of the connection until it gives up on its own.
    const upstreamClosed = () => {
      if (pair.blackholed) upstream.destroy();
      else close();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', upstreamClosed).on('close', upstreamClosed);
  }

  #links(direction: ProxyDirection | 'both'): Link[] {
    const index = direction === 'toServer' ? [0] : direction === 'toClient' ? [1] : [0, 1];
    return [...this.#pairs].flatMap((pair) => index.map((i) => pair.links[i]!));
  }

  #directions(direction: ProxyDirection | 'both'): readonly ProxyDirection[] {
    return direction === 'both' ? DIRECTIONS : [direction];
  }

  /** Resets every open connection, as a crashed peer or a broken network would. */
  resetAll(): void {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
  }

  /** While on, new connections are closed as soon as they come: a server that is down. */
  refuse(on: boolean): void {
    this.#refusing = on;
  }

  /** Stops forwarding in both directions without closing anything: a hung link. */
  pause(): void {
    this.#paused = true;
    for (const link of this.#links('both')) link.updateFlow();
  }

  resume(): void {
    this.#paused = false;
    for (const link of this.#links('both')) link.kick();
  }

  /**
   * Throws away every byte sent in `direction` while the connections stay open: a half-open
   * link, where one side's writes succeed and the other side never hears of them (lost
   * confirms when `toClient`, lost publishes and acks when `toServer`).
   */
  drop(direction: ProxyDirection | 'both'): void {
    for (const d of this.#directions(direction)) this.#faults[d].drop = true;
  }

  /**
   * Every connection open now goes silent in both directions for good, as a link whose peer
   * vanished without a FIN or RST (a NAT entry expired, a host gone): both sides' writes
   * succeed and nothing arrives. Connections made afterwards work.
   */
  blackholeOpen(): void {
    const silent = (): DirectionFault => ({ drop: true, latencyMs: 0, bytesPerSecond: undefined });
    for (const pair of this.#pairs) {
      pair.blackholed = true;
      pair.faults.toServer = silent();
      pair.faults.toClient = silent();
    }
  }

  /** Delays every chunk in `direction` by `ms`, keeping their order. */
  latency(ms: number, direction: ProxyDirection | 'both' = 'both'): void {
    for (const d of this.#directions(direction)) this.#faults[d].latencyMs = ms;
  }

  /** Forwards at most `bytesPerSecond` in `direction`; undefined lifts the limit. */
  throttle(bytesPerSecond: number | undefined, direction: ProxyDirection | 'both' = 'both'): void {
    for (const d of this.#directions(direction)) this.#faults[d].bytesPerSecond = bytesPerSecond;
  }

  /**
   * Stops the first connection whose bytes in `direction` contain `marker` right there: that
   * chunk, and everything after it in that direction, wait until `release()`. For a test that
   * needs something to happen between two requests of a client (`marker`: bytes of the second).
   * `reached` resolves once the marker came.
   */
  holdAt(
    marker: Buffer,
    direction: ProxyDirection = 'toServer',
  ): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    const arrived = new Promise<void>((resolve) => {
      reached = resolve;
    });
    const hold: Hold = { direction, marker, link: undefined, released: false, reached };
    this.#holds.add(hold);
    return {
      reached: arrived,
      release: () => {
        hold.released = true;
        this.#holds.delete(hold);
        hold.link?.kick();
      },
    };
  }

  /** Lifts drop, latency, throttle and pause; what was held back is forwarded, what was dropped is gone. */
  heal(): void {
    for (const d of DIRECTIONS) {
      Object.assign(this.#faults[d], { drop: false, latencyMs: 0, bytesPerSecond: undefined });
    }
    this.resume();
  }

  /** Stops accepting first, so a client that reconnects at once cannot keep the proxy open. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.resetAll();
    await closed;
  }
}
