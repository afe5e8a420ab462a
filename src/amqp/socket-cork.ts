import { setImmediate } from 'node:timers';
/** What corking needs of amqplib's socket. */
export interface CorkableSocket {
  cork(): void;
  uncork(): void;
  _writableState?: { highWaterMark: number };
}

/** amqplib's socket under a channel (`connection.stream`), when it has one that corks. */
export function socketOf(channel: unknown): CorkableSocket | undefined {
  const socket = (channel as { connection?: { stream?: Partial<CorkableSocket> } } | undefined)
    ?.connection?.stream;
  return typeof socket?.cork === 'function' && typeof socket.uncork === 'function'
    ? (socket as CorkableSocket)
    : undefined;
}

/**
 * Corks `socket` until amqplib's writer has passed on what is sent meanwhile: it writes on
 * `setImmediate`, so two turns of the event loop. Then `released`, and the uncork.
 */
export function corkUntilWritten(socket: CorkableSocket, released?: () => void): void {
  socket.cork();
  setImmediate(() =>
    setImmediate(() => {
      released?.();
      socket.uncork();
    }),
  );
}

const held = new WeakSet<CorkableSocket>();

/**
 * Holds a socket's writes (`corkUntilWritten`), so that acks settled in one turn of the event
 * loop leave in one system call instead of one each. One cork per socket at a time: a cork
 * taken while another is held would keep a busy socket corked for as long as acks keep coming.
 * Past the socket's high-water mark (16 KiB, some 780 acks in two turns) amqplib's writer waits
 * for the 'drain' that follows the uncork: later, never stuck.
 */
export function holdWrites(socket: CorkableSocket): void {
  if (held.has(socket)) return;
  held.add(socket);
  corkUntilWritten(socket, () => held.delete(socket));
}

/** `holdWrites` on the socket under a channel, when it has one that corks. */
export function holdChannelWrites(channel: unknown): void {
  const socket = socketOf(channel);
  if (socket) holdWrites(socket);
}
