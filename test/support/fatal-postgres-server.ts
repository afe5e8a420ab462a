import net from 'node:net';

/**
 * A stand-in for a Postgres that is shutting down: it accepts every connection, completes the
 * startup, and sends the ready message and a FATAL 57P01 ("terminating connection due to
 * administrator command") in one write, then closes. pg parses both in one go, so the error is
 * emitted on a client the pool has just handed over, before any borrower's code has run: the
 * moment a real restart hits only now and then, every time.
 */
export class FatalPostgresServer {
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** Connections that got as far as the startup message. */
  connections = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(): Promise<FatalPostgresServer> {
    const server = net.createServer();
    const self = new FatalPostgresServer(server);
    server.on('connection', (socket) => self.#accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return self;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  url(applicationName = 'fatal-test'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres?application_name=${applicationName}`;
  }

  #accept(socket: net.Socket): void {
    this.#sockets.add(socket);
    socket.on('close', () => this.#sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      // The startup message: an int32 length (itself included), then the protocol version.
      if (buffered.length < 4 || buffered.length < buffered.readInt32BE(0)) return;
      buffered = Buffer.alloc(0);
      this.connections += 1;
      socket.end(
        Buffer.concat([
          message('R', int32(0)), // AuthenticationOk
          message('K', Buffer.concat([int32(4242), int32(0x5eed)])), // BackendKeyData
          message('Z', Buffer.from('I')), // ReadyForQuery, idle
          message(
            'E',
            Buffer.concat([
              field('S', 'FATAL'),
              field('V', 'FATAL'),
              field('C', '57P01'),
              field('M', 'terminating connection due to administrator command'),
              Buffer.from([0]),
            ]),
          ),
        ]),
      );
    });
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
}

function message(type: string, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from(type), int32(body.length + 4), body]);
}

function field(code: string, value: string): Buffer {
  return Buffer.concat([Buffer.from(code), Buffer.from(value), Buffer.from([0])]);
}
