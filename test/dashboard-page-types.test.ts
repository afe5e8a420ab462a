import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { dashboardPage } from '../src/dashboard/dashboard-page.js';
import type { DashboardDeadLetters, DashboardStatus } from '../src/dashboard/outbox-dashboard.js';
import type { PageDeadLetters, PageStatus } from '../src/dashboard/page/dashboard-api.js';

// Compile-time: the server's answers fit what the page's script reads. A renamed or retyped
// field of the API fails the build of the tests here, not the page in a browser.
type Fits<A, B> = A extends B ? true : false;
const statusFits: Fits<DashboardStatus, PageStatus> = true;
const deadLettersFits: Fits<DashboardDeadLetters, PageDeadLetters> = true;

test('the page inlines the compiled script and allows exactly it by hash', async () => {
  assert.ok(statusFits && deadLettersFits);
  const { html, csp } = dashboardPage();
  const script = readFileSync(
    new URL('../src/dashboard/page/dashboard-script.js', import.meta.url),
    'utf8',
  );
  assert.ok(html.includes(`<script type="module">${script}</script>`));
  const { createHash } = await import('node:crypto');
  const hash = createHash('sha256').update(script).digest('base64');
  assert.match(csp, new RegExp(`script-src 'sha256-${hash.replace(/[+/=]/g, '\\$&')}'`));
  assert.doesNotMatch(script, /sourceMappingURL|require\(/);
});
