import net from 'node:net';

/**
 * A TCP proxy on loopback between a client under test and a real server, so a test can cut,
 * pause or reset one connection without touching the server or anyone else's connections.
 */
export class TcpProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #pairs = new Set<{ client: net.Socket; upstream: net.Socket }>();
  #paused = false;
  /** Connections accepted so far. */
  accepted = 0;

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    const proxy = new TcpProxy({ host: targetHost, port: targetPort });
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    return proxy;
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
    this.accepted += 1;
    const upstream = net.connect(this.#target.port, this.#target.host);
    const pair = { client, upstream };
    this.#pairs.add(pair);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    if (this.#paused) {
      client.pause();
      upstream.pause();
    }
    const close = () => {
      this.#pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  }

  /** Resets every open connection, as a crashed peer or a broken network would. */
  resetAll(): void {
    for (const { client, upstream } of this.#pairs) {
      client.resetAndDestroy();
      upstream.destroy();
    }
  }

  /** Stops forwarding in both directions without closing anything: a hung link. */
  pause(): void {
    this.#paused = true;
    for (const { client, upstream } of this.#pairs) {
      client.pause();
      upstream.pause();
    }
  }

  resume(): void {
    this.#paused = false;
    for (const { client, upstream } of this.#pairs) {
      client.resume();
      upstream.resume();
    }
  }

  /** Stops accepting first, so a client that reconnects at once cannot keep the proxy open. */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.resetAll();
    await closed;
  }
}
