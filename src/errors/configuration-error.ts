import { OutboxkitError } from './outboxkit-error.js';

/** An option has a value outboxkit cannot work with; the message names the option. */
export class ConfigurationError extends OutboxkitError {
  readonly option: string;

  constructor(option: string, detail: string) {
    super('invalid-configuration', `Invalid option \`${option}\`: ${detail}`);
    this.option = option;
  }
}
