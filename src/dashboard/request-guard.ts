import type { IncomingMessage } from 'node:http';

/**
 * The header the dashboard page sends with every change it asks for. A foreign page cannot
 * send it: a custom header makes the browser ask the server first (a CORS preflight), and the
 * dashboard never allows cross-origin requests.
 */
export const DASHBOARD_REQUEST_HEADER = 'x-outboxkit-dashboard';

/** Host names of the loopback interface, as a browser on the same machine sends them. */
export const LOOPBACK_HOSTS: readonly string[] = Object.freeze(['localhost', '127.0.0.1', '[::1]']);

/** The host name of a `Host` header, lower case and without the port (`[::1]` keeps brackets). */
export function hostNameOf(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  const h = host.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end === -1 ? undefined : h.slice(0, end + 1);
  }
  const colon = h.indexOf(':');
  return colon === -1 ? h : h.slice(0, colon);
}

/**
 * Why a request must not be served because of the host it was sent to, or `undefined`. With a
 * list of allowed host names, a page of another site whose domain was pointed at this machine
 * (DNS rebinding) is refused: its requests carry that site's name in `Host`. `howToAllow` says,
 * in the terms of the surface in use, how to allow a host name; by default the `allowedHosts`
 * option of `OutboxDashboard` and of the Nest module's `dashboard`.
 */
export function hostRefusal(
  req: IncomingMessage,
  allowedHosts: readonly string[] | undefined,
  howToAllow: (name: string) => string = (name) =>
    `add ${JSON.stringify(name)} to the dashboard's allowedHosts`,
  trustForwardedHost = false,
): string | undefined {
  if (allowedHosts === undefined) return undefined;
  // Behind a proxy that rewrites Host, `X-Forwarded-Host` is the name the browser used, and the
  // one a rebinding page controls: checked too, or the proxy's own `Host` let any site in.
  const forwarded = trustForwardedHost ? headerText(req.headers['x-forwarded-host']) : undefined;
  const seen = [req.headers.host, forwarded?.split(',')[0]].filter(
    (h): h is string => h !== undefined,
  );
  for (const host of seen) {
    const name = hostNameOf(host);
    if (name !== undefined && allowedHosts.includes(name)) continue;
    const hint = name === undefined ? '' : ` (to serve it, ${howToAllow(name)})`;
    return `host ${JSON.stringify(host)} is not one this dashboard answers to${hint}`;
  }
  return seen.length === 0 ? `a request without a Host header is not served` : undefined;
}

/**
 * Why a request must not be served because of where it comes from, for a dashboard that answers
 * the loopback names only: `Host` is the client's to write, and an application listening on
 * every interface (Nest's default) would otherwise serve any client that sends
 * `Host: localhost`. A socket without an address (a Unix socket) is local.
 */
export function remoteRefusal(req: IncomingMessage): string | undefined {
  const address = req.socket?.remoteAddress;
  if (address === undefined || isLoopbackAddress(address)) return undefined;
  return `a client at ${address} is not on this machine, and this dashboard answers the loopback names only: to serve others, add the host name they use to allowedHosts, behind your authentication`;
}

/** An address only this machine reaches (IPv4 127/8, also as IPv4-mapped IPv6, or ::1). */
export function isLoopbackAddress(address: string): boolean {
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return v4.startsWith('127.') || address === '::1';
}

/**
 * Why a request that changes something must be refused as cross-site, or `undefined` when it
 * comes from the dashboard's own page. Three checks, each enough on its own against a page of
 * another site: the custom header, the browser's `Sec-Fetch-Site`, and an `Origin` that is not
 * this host. `X-Forwarded-Host` counts as this host only with `trustForwardedHost`: a foreign
 * page allowed by a permissive CORS policy could send that header too.
 */
export function crossSiteRefusal(
  req: IncomingMessage,
  trustForwardedHost = false,
): string | undefined {
  if (req.headers[DASHBOARD_REQUEST_HEADER] === undefined) {
    return `the ${DASHBOARD_REQUEST_HEADER} header is missing: changes are accepted from the dashboard page only`;
  }
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') {
    return `a ${site} request cannot change anything`;
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let originHost: string;
    try {
      originHost = new URL(origin).host.toLowerCase();
    } catch {
      return `origin ${JSON.stringify(origin)} is not this dashboard`;
    }
    // Behind a reverse proxy that rewrites Host, the browser saw the forwarded host.
    const forwarded = trustForwardedHost ? headerText(req.headers['x-forwarded-host']) : undefined;
    const hosts = [req.headers.host, forwarded]
      .filter((h): h is string => h !== undefined)
      .map((h) => h.split(',')[0]!.trim().toLowerCase());
    if (!hosts.includes(originHost)) {
      const hint =
        !trustForwardedHost && req.headers['x-forwarded-host'] !== undefined
          ? ' (behind a proxy that rewrites Host, set trustForwardedHost)'
          : '';
      return `origin ${JSON.stringify(origin)} is not this dashboard${hint}`;
    }
  }
  return undefined;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
