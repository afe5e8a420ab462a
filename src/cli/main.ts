#!/usr/bin/env node
// The `outboxkit` executable. Everything but the exit lives in run-cli.ts, which tests import.
import { runCli } from './run-cli.js';

// A reader that stops early (`| head`) closes the pipe: the rest of the output is not wanted, and
// the command ends quietly, as other command-line tools do, rather than with a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code !== 'EPIPE') throw error;
  process.exit(0);
});

const status = await runCli(process.argv.slice(2), process.env);
// A pipe takes what its reader has room for, and Node keeps the rest to write later: an exit
// before that cut `dead-letters list --json | jq` at 64 KiB. Exit once both are written.
await Promise.all([written(process.stdout), written(process.stderr)]);
// Exit explicitly: a command is done when runCli resolves, and a stray timer or socket of a
// driver must not keep a stopped relay alive until its supervisor kills it.
process.exit(status);

/** Resolves once everything written to `stream` before has been handed to the system. */
function written(stream: NodeJS.WriteStream): Promise<void> {
  return new Promise((resolve) => {
    stream.write('', () => resolve());
  });
}
