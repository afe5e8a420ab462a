// biome-ignore-all lint/correctness/noUnusedVariables: a prelude declares what the snippets use
// A Nest application's own pieces: the injection token of its Kysely instance and an admin guard.
import type * as __nest from '@nestjs/common';

const KYSELY = Symbol('kysely');
class AdminGuard implements __nest.CanActivate {
  canActivate(): boolean {
    return true;
  }
}
