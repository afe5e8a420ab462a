import { OutboxkitError } from './outboxkit-error.js';

/** An option has a value outboxkit cannot work with; the message names the option. */
export class ConfigurationError extends OutboxkitError {
  readonly option: string;
  /** What is wrong with it, without the option's name: for an error that names it otherwise. */
  readonly detail: string;

  constructor(option: string, detail: string) {
    super('invalid-configuration', `Invalid option \`${option}\`: ${detail}`);
    this.option = option;
    this.detail = detail;
  }
}
