import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { OutboxkitError } from '../errors/outboxkit-error.js';
import { DASHBOARD_REQUEST_HEADER } from './request-guard.js';

// The page is one self-contained document: nothing is fetched from elsewhere. Its script is
// page/dashboard-script.ts, compiled for the browser by page/tsconfig.json and inlined here.

const STYLE = `
:root { color-scheme: light dark; --muted: #6b7280; --line: #d1d5db; --bad: #b91c1c; --ok: #047857; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 1rem 1.5rem; max-width: 1200px; }
header { display: flex; align-items: baseline; gap: 1rem; flex-wrap: wrap; }
h1 { font-size: 1.3rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
h3 { font-size: .95rem; margin: 1rem 0 .4rem; }
#meta, .muted { color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .6rem; margin-top: 1rem; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .5rem .7rem; }
.card .label { display: block; color: var(--muted); font-size: .8rem; }
.card .value { font-size: 1.4rem; font-variant-numeric: tabular-nums; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .75rem; color: var(--muted); text-transform: uppercase; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.wrap { max-width: 28rem; overflow-wrap: anywhere; }
.actions { display: flex; gap: .4rem; margin: .1rem 0; }
button { font: inherit; padding: .1rem .6rem; cursor: pointer; }
button.danger { color: var(--bad); }
#error { color: var(--bad); font-weight: 600; }
#notice { color: var(--ok); }
#notice.failed { color: var(--bad); }
`;

const BODY = `<header><h1>outboxkit</h1><span id="meta">loading...</span></header>
<p id="error" role="alert" hidden></p>
<p id="notice" role="status" hidden></p>
<section id="totals" class="cards"></section>
<h2>Exchanges</h2>
<div id="exchanges"></div>
<h2>Parked outbox rows: <span id="parked-summary">-</span></h2>
<div id="parked-actions" class="actions"></div>
<div id="parked"></div>
<h2 id="queues-title" hidden>Consumer dead-letter queues</h2>
<div id="queues"></div>`;

/** The page and its Content-Security-Policy, which allows its inline script and style by hash. */
export interface DashboardPage {
  readonly html: string;
  readonly csp: string;
}

let page: DashboardPage | undefined;

/** The page, built on first use from the compiled script shipped beside this module. */
export function dashboardPage(): DashboardPage {
  page ??= buildPage(readScript());
  return page;
}

function readScript(): string {
  const file = new URL('./page/dashboard-script.js', import.meta.url);
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new OutboxkitError(
      'dashboard-script-missing',
      `The dashboard page's script ${file.pathname} is missing: an application bundle that includes outboxkit must ship the package's dist/src/dashboard/page/dashboard-script.js at that path (docs/operations.md, "Bundling"); otherwise reinstall outboxkit (in outboxkit's own repository, \`npm run build\` compiles it)`,
      { cause: error },
    );
  }
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

function buildPage(script: string): DashboardPage {
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>outboxkit dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body data-request-header="${DASHBOARD_REQUEST_HEADER}">
${BODY}
<script type="module">${script}</script>
</body>
</html>
`;
  // Its own inline script and style (by hash) and requests to its own origin, nothing else; no
  // framing, so another site cannot overlay it and trick a click on a replay button.
  const csp = [
    "default-src 'none'",
    `script-src ${sha256(script)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  return { html, csp };
}
