import net from 'node:net';

/** Accepts TCP and never answers: an AMQP or Postgres handshake with it never completes. */
export class SilentServer {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(): Promise<SilentServer> {
    let silent!: SilentServer;
    const server = net.createServer((socket) => {
      silent.#sockets.add(socket);
      socket.on('error', () => {});
    });
    silent = new SilentServer(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return silent;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
