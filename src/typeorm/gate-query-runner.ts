import { refusal } from '../consumer/consumer-transactions.js';

/** The part of a TypeORM `QueryRunner` the gate replaces. */
export interface TypeOrmGatedQueryRunnerLike {
  // biome-ignore lint/suspicious/noExplicitAny: TypeORM's overloads of query
  query(text: string, params?: unknown[], useStructuredResult?: boolean): Promise<any>;
}

/**
 * Makes every statement of `runner` (its manager's included) fail with `closed()`'s error once it
 * returns one, COMMIT and ROLLBACK excepted. TypeORM refuses them itself only once the runner is
 * released, after the ROLLBACK came back: a statement sent meanwhile would run after it, on its
 * own. Returns the runner's own `query`, for the host's statements.
 */
export function gateQueryRunner<R extends TypeOrmGatedQueryRunnerLike>(
  runner: R,
  closed: () => Error | undefined,
): R['query'] {
  const query = runner.query.bind(runner);
  runner.query = (text, params, structured) => {
    const error = refusal(closed, text);
    if (error) return Promise.reject(error);
    return query(text, params, structured);
  };
  return query;
}
