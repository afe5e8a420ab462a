import type { ConsumerTransactions } from '../consumer/consumer-transactions.js';
import { isDatabaseUnavailable } from '../consumer/database-errors.js';
import { StartupError } from '../errors/startup-error.js';
import type { PgQueryable } from '../sql/sql-executor.js';
import { errorMessage } from '../util/logger.js';
import { bounded, START_CHECK_TIMEOUT_MS } from './start-checks.js';

/**
 * Opens one transaction through the host's ORM adapter (`transactions`) and runs `SELECT 1` in
 * it. An ORM not initialized, already closed, or given the wrong object fails every message's
 * transaction the same way: it is refused here, at start. Only once the database itself has
 * answered on `db`, so that a database down at start is waited for, as everywhere else.
 */
export async function checkTransactions(
  db: PgQueryable,
  transactions: ConsumerTransactions<unknown>,
): Promise<void> {
  const answered = await bounded(
    db.query('SELECT 1').then(
      () => true,
      () => false,
    ),
  );
  if (answered !== true) return;
  let failure: unknown;
  const opened = await bounded(
    transactions
      .run(
        {
          isolationLevel: 'read committed',
          timeoutMs: START_CHECK_TIMEOUT_MS,
          handlers: 0,
          closed: () => undefined,
        },
        async (transaction) => {
          await transaction.query('SELECT 1', []);
        },
      )
      .then(
        () => true,
        (error: unknown) => {
          failure = error;
          return false;
        },
      ),
  );
  if (opened !== false || isDatabaseUnavailable(failure)) return;
  throw new StartupError(
    'orm-transaction-failed',
    'postgres',
    `the consumers' \`transactions\` (an ORM adapter) could not open a transaction: ${errorMessage(failure)}. ` +
      'Start the ORM before the host (TypeORM: `await dataSource.initialize()`), give its adapter the ' +
      'handle docs/orm.md names (MikroORM: `orm.em`, not `orm`), and stop the host before closing the ORM.',
    failure,
  );
}
