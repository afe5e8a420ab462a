import { ConfigurationError } from '../errors/configuration-error.js';

/**
 * Refuses an `allowedHosts` entry that no `Host` header can equal: a URL
 * (`http://ops.example.com`) or a name with a port or path. It would be taken and never match,
 * so the dashboard would answer 403 to the host it was meant to allow.
 */
export function checkAllowedHostNames(option: string, hosts: readonly string[]): void {
  hosts.forEach((host, i) => {
    // A bracketed IPv6 address is the one form with colons.
    const bare = host.startsWith('[') && host.endsWith(']') ? '' : host;
    if (/[/\s:]/.test(bare) || host.includes('/')) {
      throw new ConfigurationError(
        `${option}[${i}]`,
        `must be a host name as in the Host header, without scheme, port or path (such as ops.example.com), got ${JSON.stringify(host)}`,
      );
    }
  });
}
