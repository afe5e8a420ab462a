import type { IncomingMessage, ServerResponse } from 'node:http';
import { All, Controller, Inject, Param, Req, Res, type Type, UseGuards } from '@nestjs/common';
import { OutboxDashboardHost } from './outbox-dashboard-host.js';
import type { OutboxDashboardSettings } from './outbox-dashboard-settings.js';

/** Express hands over node's request and response; Fastify wraps them in `raw`. */
type Wrapped<T> = T & { raw?: T };

/**
 * Makes the controller that serves the dashboard under `path`: a class per module, since a
 * controller's route is fixed by its decorator. Every request below the path goes to the core
 * handler, which answers it in full (`@Res()`), so Nest's serialization stays out of the way.
 */
export function outboxDashboardController(
  path: string,
  guards: OutboxDashboardSettings['guards'] = [],
): Type<unknown> {
  @Controller(path)
  @UseGuards(...guards)
  class OutboxDashboardController {
    readonly #host: OutboxDashboardHost;

    constructor(@Inject(OutboxDashboardHost) host: OutboxDashboardHost) {
      this.#host = host;
    }

    @All(['', '{*path}'])
    async serve(
      @Req() req: Wrapped<IncomingMessage>,
      @Res() res: Wrapped<ServerResponse>,
      @Param('path') rest: string[] | string | undefined,
    ): Promise<void> {
      await this.#host.dashboard.handle(req.raw ?? req, res.raw ?? res, subPath(rest));
    }
  }
  return OutboxDashboardController;
}

/**
 * The path below the mount point, from the wildcard parameter. Express 5 gives its segments
 * decoded: they are encoded again, so an id holding a slash stays one segment.
 */
function subPath(rest: string[] | string | undefined): string {
  if (rest === undefined) return '';
  if (typeof rest === 'string') return rest;
  return rest.map((segment) => encodeURIComponent(segment)).join('/');
}
