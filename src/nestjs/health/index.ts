/**
 * The `@nestjs/terminus` health indicator: `import { OutboxHealthIndicator } from
 * 'outboxkit/nestjs/health'`. A separate entry point, so applications without terminus never
 * load it.
 */
export { OutboxHealthIndicator, type OutboxHealthOptions } from './outbox-health.indicator.js';
