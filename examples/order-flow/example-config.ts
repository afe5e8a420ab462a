import { randomBytes } from 'node:crypto';

/** Where the example runs: its own schema and broker name prefix, so runs never meet. */
export interface ExampleConfig {
  readonly databaseUrl: string;
  readonly amqpUrl: string;
  /** Schema of both the example's tables and outboxkit's. */
  readonly schema: string;
  /** Put in front of the example's exchange and queue names. */
  readonly prefix: string;
}

/** Injection token of the `ExampleConfig`. */
export const EXAMPLE_CONFIG = Symbol('example config');

/**
 * The local services by default, as in `docker-compose.yml`; `DATABASE_URL` and `AMQP_URL`
 * point elsewhere.
 */
export function exampleConfig(env: NodeJS.ProcessEnv = process.env): ExampleConfig {
  const run = randomBytes(4).toString('hex');
  return {
    databaseUrl: env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
    amqpUrl: env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
    schema: `outboxkit_example_${run}`,
    prefix: `example-${run}.`,
  };
}
