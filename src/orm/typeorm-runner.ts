/** What outboxkit reads of a TypeORM `QueryRunner`. */
export interface TypeOrmRunnerState {
  readonly isTransactionActive: boolean;
  readonly isReleased: boolean;
}

/**
 * The runner a TypeORM handle's statements go through: a `QueryRunner` itself, or an
 * `EntityManager`'s (none for `dataSource.manager`, whose statements each commit on their own).
 */
export function typeormRunnerOf<R extends TypeOrmRunnerState>(
  handle: R | { readonly queryRunner?: R | undefined },
): R | undefined {
  return 'isTransactionActive' in handle ? handle : handle.queryRunner;
}

/** Whether statements through `runner` run in a transaction that is open now. */
export function typeormTransactionOpen(runner: TypeOrmRunnerState | undefined): boolean {
  return runner?.isTransactionActive === true && !runner.isReleased;
}
