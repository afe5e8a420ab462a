/**
 * `outboxkit/dashboard`: the web dashboard as a plain `node:http` request handler, and the
 * shapes of its JSON API.
 */
export type { OutboxDashboardOptions } from './dashboard-options.js';
export type { ParkedRowView, QueuedDeadLetterView } from './dashboard-views.js';
export type { OutboxActivity } from './outbox-activity.js';
export {
  type DashboardDeadLetters,
  type DashboardStatus,
  OutboxDashboard,
} from './outbox-dashboard.js';
export type { QueueDeadLettersView } from './queue-dead-letters.js';
export type { OutboxRates } from './rate-tracker.js';
