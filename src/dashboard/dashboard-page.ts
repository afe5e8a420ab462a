import { createHash } from 'node:crypto';
import { DASHBOARD_REQUEST_HEADER } from './request-guard.js';

// The page is one self-contained document: no build step, no file to ship, nothing fetched from
// elsewhere. Every value from the API goes into the DOM as text (`append` of a string, or
// `setAttribute`), never as HTML, so a message id or an error text cannot inject markup.

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

const SCRIPT = `
'use strict';
(() => {
  const base = location.pathname.endsWith('/') ? location.pathname : location.pathname + '/';
  const HEADER = ${JSON.stringify(DASHBOARD_REQUEST_HEADER)};
  let refreshMs = 2000;
  let readOnly = true;
  let timer;
  let seq = 0;
  let renders = 0;
  const byId = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (typeof value === 'function') node.addEventListener(name, value);
      else node.setAttribute(name, String(value));
    }
    for (const child of children) {
      if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function age(seconds) {
    if (seconds === null || seconds === undefined) return '-';
    const s = Math.floor(seconds);
    const two = (n) => String(n).padStart(2, '0');
    if (s < 60) return s + 's';
    if (s < 3600) return Math.floor(s / 60) + 'm' + two(s % 60) + 's';
    if (s < 86400) return Math.floor(s / 3600) + 'h' + two(Math.floor((s % 3600) / 60)) + 'm';
    return Math.floor(s / 86400) + 'd' + two(Math.floor((s % 86400) / 3600)) + 'h';
  }
  const perSecond = (r) => (r === null || r === undefined ? '-' : (r < 10 ? r.toFixed(1) : String(Math.round(r))) + '/s');
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : '-');

  async function getJson(path) {
    const res = await fetch(base + path, { headers: { accept: 'application/json' }, cache: 'no-store' });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.error || res.status + ' ' + res.statusText);
    return body;
  }

  function show(id, text, failed) {
    const node = byId(id);
    node.hidden = !text;
    node.textContent = text || '';
    node.classList.toggle('failed', Boolean(failed));
  }

  function card(testid, label, text, value) {
    return el('div', { class: 'card' },
      el('span', { class: 'label' }, label),
      el('span', { class: 'value', 'data-testid': testid, 'data-value': value }, text));
  }

  function table(headers, rows, empty) {
    if (rows.length === 0) return el('p', { class: 'muted' }, empty);
    return el('table', {},
      el('thead', {}, el('tr', {}, ...headers.map(([text, cls]) => el('th', { class: cls }, text)))),
      el('tbody', {}, ...rows));
  }

  function button(label, onClick, danger) {
    const b = el('button', { type: 'button', class: danger ? 'danger' : undefined, 'data-action': label.toLowerCase() }, label);
    b.addEventListener('click', () => onClick(b));
    return b;
  }

  async function act(what, path, source, question) {
    if (question && !confirm(question)) return;
    if (source) source.disabled = true;
    show('notice', what + '...');
    try {
      const res = await fetch(base + path, { method: 'POST', headers: { [HEADER]: '1' }, cache: 'no-store' });
      const body = await res.json().catch(() => ({}));
      if (!res.ok) throw new Error(body.error || String(res.status));
      const failed = body.failed ? body.failed.length : 0;
      show('notice', what + ': ' + body.done + ' done' + (failed ? ', ' + failed + ' failed: ' + body.failed[0].error : ''), failed > 0);
    } catch (error) {
      show('notice', what + ' failed: ' + error.message, true);
    }
    await refresh();
  }

  function render(status, dead) {
    readOnly = !status.allowReplay;
    const t = status.status.total;
    const r = status.rates;
    byId('meta').textContent = 'schema ' + status.status.schema + ' \\u00b7 ' +
      (readOnly ? 'read-only' : 'replay and purge enabled') + ' \\u00b7 updated ' + new Date().toLocaleTimeString();
    byId('totals').replaceChildren(
      card('total-pending', 'pending', String(t.pending), t.pending),
      card('total-oldest', 'oldest pending', age(t.oldestPendingAgeSeconds), t.oldestPendingAgeSeconds),
      card('total-retrying', 'retrying', String(t.retrying), t.retrying),
      card('total-parked', 'parked', String(t.parked), t.parked),
      card('rate-published', 'published', perSecond(r.publishedPerSecond), r.publishedPerSecond),
      card('rate-written', 'written', perSecond(r.writtenPerSecond), r.writtenPerSecond));

    byId('exchanges').replaceChildren(table(
      [['exchange'], ['pending', 'num'], ['oldest', 'num'], ['retrying', 'num'], ['parked', 'num']],
      status.status.exchanges.map((e) => el('tr', { 'data-exchange': e.exchange },
        el('td', {}, e.exchange),
        el('td', { class: 'num', 'data-col': 'pending' }, String(e.pending)),
        el('td', { class: 'num' }, age(e.oldestPendingAgeSeconds)),
        el('td', { class: 'num', 'data-col': 'retrying' }, String(e.retrying)),
        el('td', { class: 'num', 'data-col': 'parked' }, String(e.parked)))),
      'Nothing pending or parked.'));

    const p = dead.parked;
    byId('parked-summary').textContent = p.total + (p.rows.length < p.total ? ' (showing ' + p.rows.length + ')' : '');
    byId('parked-actions').replaceChildren(...(readOnly || p.total === 0 ? [] : [
      button('Replay all', (b) => act('Replay all parked rows', 'api/parked/replay', b, 'Move all ' + p.total + ' parked rows back to the outbox?')),
      button('Purge all', (b) => act('Purge all parked rows', 'api/parked/purge', b, 'Delete all ' + p.total + ' parked rows for good?'), true),
    ]));
    const id = encodeURIComponent;
    byId('parked').replaceChildren(table(
      [['id'], ['message id'], ['exchange'], ['routing key'], ['reason'], ['attempts', 'num'], ['parked at'], ['']],
      p.rows.map((m) => el('tr', { 'data-parked-id': m.id, 'data-message-id': m.messageId },
        el('td', {}, m.id),
        el('td', { class: 'wrap' }, m.messageId),
        el('td', {}, m.exchange),
        el('td', {}, m.routingKey),
        el('td', { class: 'wrap', title: m.lastError || undefined }, m.reason),
        el('td', { class: 'num' }, String(m.attempts)),
        el('td', {}, when(m.parkedAt)),
        el('td', {}, el('div', { class: 'actions' }, ...(readOnly ? [] : [
          button('Replay', (b) => act('Replay row ' + m.id, 'api/parked/' + id(m.id) + '/replay', b)),
          button('Purge', (b) => act('Purge row ' + m.id, 'api/parked/' + id(m.id) + '/purge', b, 'Delete parked row ' + m.id + ' for good?'), true),
        ]))))),
      'No parked rows.'));

    byId('queues').replaceChildren(...dead.queues.map((q) => {
      const path = 'api/queues/' + id(q.queue);
      const actions = readOnly || !q.depth ? [] : [
        button('Replay all', (b) => act('Replay ' + q.deadLetterQueue, path + '/replay', b, 'Replay all ' + q.depth + ' dead letters of ' + q.queue + '?')),
        button('Purge all', (b) => act('Purge ' + q.deadLetterQueue, path + '/purge', b, 'Delete all ' + q.depth + ' dead letters of ' + q.queue + ' for good?'), true),
      ];
      const body = q.error
        ? el('p', { class: 'muted' }, 'Unavailable: ' + q.error)
        : table(
          [['message id'], ['exchange'], ['routing key'], ['reason'], ['error'], ['attempts', 'num'], ['dead at'], ['']],
          q.messages.map((d) => el('tr', { 'data-message-id': d.messageId },
            el('td', { class: 'wrap' }, d.messageId || '-'),
            el('td', {}, d.exchange || '-'),
            el('td', {}, d.routingKey || '-'),
            el('td', {}, d.reason || '-'),
            el('td', { class: 'wrap' }, d.error || '-'),
            el('td', { class: 'num' }, d.attempts === null ? '-' : String(d.attempts)),
            el('td', {}, when(d.deadAt)),
            el('td', {}, el('div', { class: 'actions' }, ...(readOnly || !d.messageId ? [] : [
              button('Replay', (b) => act('Replay ' + d.messageId, path + '/messages/' + id(d.messageId) + '/replay', b)),
              button('Purge', (b) => act('Purge ' + d.messageId, path + '/messages/' + id(d.messageId) + '/purge', b, 'Delete dead letter ' + d.messageId + ' for good?'), true),
            ]))))),
          'No dead letters.');
      return el('section', { 'data-queue': q.queue },
        el('h3', {}, q.deadLetterQueue + ' ', el('span', { class: 'muted' }, '('),
          el('span', { 'data-testid': 'dlq-depth', 'data-value': q.depth }, q.depth === null ? '-' : String(q.depth)),
          el('span', { class: 'muted' }, ' messages)')),
        el('div', { class: 'actions' }, ...actions),
        body);
    }));
    byId('queues-title').hidden = dead.queues.length === 0;
    renders += 1;
    document.body.dataset.renders = String(renders);
  }

  async function refresh() {
    const mine = ++seq;
    clearTimeout(timer);
    let status;
    let dead;
    let failure;
    try {
      [status, dead] = await Promise.all([getJson('api/status'), getJson('api/dead-letters')]);
    } catch (error) {
      failure = error;
    }
    // A later refresh (after a click) has the newer figures: this one's are dropped.
    if (mine !== seq) return;
    if (failure) show('error', 'Could not load the figures: ' + failure.message);
    else {
      show('error', '');
      refreshMs = status.refreshIntervalMs || refreshMs;
      render(status, dead);
    }
    timer = setTimeout(refresh, refreshMs);
  }

  refresh();
})();
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

/** The dashboard page. */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>outboxkit dashboard</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body>
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/**
 * The page's Content-Security-Policy: its own inline script and style (by hash) and requests to
 * its own origin, nothing else; no framing, so another site cannot overlay it and trick a click
 * on a replay button.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
