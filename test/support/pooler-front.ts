import net from 'node:net';

/** What PgBouncer (1.18 to 1.24) takes in a startup packet; it refuses any other parameter. */
const POOLER_PARAMETERS = new Set([
  'user',
  'database',
  'application_name',
  'client_encoding',
  'datestyle',
  'timezone',
  'standard_conforming_strings',
]);

const SSL_REQUEST = 80877103;

/**
 * A Postgres front that refuses the startup parameters a connection pooler such as PgBouncer
 * refuses (`statement_timeout`, `options`, ...), as PgBouncer does, and passes every other
 * connection through to `upstream`. What a client sends after its startup is not looked at.
 */
export class PoolerFront {
  readonly refused: string[] = [];
  readonly #server: net.Server;
  readonly #sockets = new Set<net.Socket>();

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async open(upstream: { host: string; port: number }): Promise<PoolerFront> {
    const server = net.createServer();
    const front = new PoolerFront(server);
    server.on('connection', (socket) => front.#accept(socket, upstream));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return front;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  /** `url` with its host and port replaced by the front's. */
  url(url: string): string {
    const through = new URL(url);
    through.hostname = '127.0.0.1';
    through.port = String(this.port);
    return through.toString();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket, upstream: { host: string; port: number }): void {
    this.#sockets.add(client);
    client.on('close', () => this.#sockets.delete(client));
    client.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (buffered.length < 8) return;
      const length = buffered.readInt32BE(0);
      if (buffered.length < length) return;
      if (buffered.readInt32BE(4) === SSL_REQUEST) {
        buffered = buffered.subarray(length);
        client.write('N');
        return;
      }
      client.off('data', onData);
      const startup = buffered.subarray(0, length);
      const unknown = startupParameters(startup).find((name) => !POOLER_PARAMETERS.has(name));
      if (unknown !== undefined) {
        this.refused.push(unknown);
        client.end(fatal('08P01', `unsupported startup parameter: ${unknown}`));
        return;
      }
      const server = net.connect(upstream);
      this.#sockets.add(server);
      server.on('close', () => this.#sockets.delete(server));
      server.on('error', () => client.destroy());
      client.on('close', () => server.destroy());
      server.write(buffered);
      client.pipe(server);
      server.pipe(client);
    };
    client.on('data', onData);
  }
}

/** The parameter names of a startup packet (length, protocol, then name\0value\0 pairs). */
function startupParameters(packet: Buffer): string[] {
  const parts = packet.subarray(8).toString('utf8').split('\u0000');
  const names: string[] = [];
  for (let i = 0; i + 1 < parts.length && parts[i] !== ''; i += 2) {
    names.push(parts[i]!.toLowerCase());
  }
  return names;
}

/** An ErrorResponse message of severity FATAL. */
function fatal(code: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`, 'utf8');
  const header = Buffer.alloc(5);
  header.write('E', 0);
  header.writeInt32BE(fields.length + 4, 1);
  return Buffer.concat([header, fields]);
}
