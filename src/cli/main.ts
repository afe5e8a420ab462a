#!/usr/bin/env node
// The `outboxkit` executable. Everything but the exit lives in run-cli.ts, which tests import.
import { runCli } from './run-cli.js';

const status = await runCli(process.argv.slice(2), process.env);
// Exit explicitly: a command is done when runCli resolves, and a stray timer or socket of a
// driver must not keep a stopped relay alive until its supervisor kills it.
process.exit(status);
