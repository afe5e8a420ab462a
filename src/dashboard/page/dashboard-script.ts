// The dashboard page's script, inlined into the page as a module script and allowed by its hash
// in the Content-Security-Policy. Every value from the API goes into the DOM as text (`append`
// of a string, or `setAttribute`), never as HTML, so a message id or an error text cannot inject
// markup.
import type { PageDeadLetters, PageQueue, PageStatus, PageWorkResult } from './dashboard-api.js';

type Child = Node | string | number | null | undefined;
type Attrs = Record<string, string | number | null | undefined>;

const base = location.pathname.endsWith('/') ? location.pathname : `${location.pathname}/`;
/** The header a change must carry; named by the server on the body, so it lives in one place. */
const HEADER = document.body.dataset.requestHeader ?? '';
let refreshMs = 2000;
let readOnly = true;
let timer: ReturnType<typeof setTimeout> | undefined;
let seq = 0;
let renders = 0;

function byId(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

function el(tag: string, attrs: Attrs, ...children: Child[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child !== undefined && child !== null) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function age(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return '-';
  const s = Math.floor(seconds);
  const two = (n: number) => String(n).padStart(2, '0');
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${two(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${two(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86400)}d${two(Math.floor((s % 86400) / 3600))}h`;
}

function perSecond(rate: number | null | undefined): string {
  if (rate === null || rate === undefined) return '-';
  return `${rate < 10 ? rate.toFixed(1) : String(Math.round(rate))}/s`;
}

const when = (iso: string | null) => (iso ? new Date(iso).toLocaleString() : '-');

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

async function getJson<T>(path: string): Promise<T> {
  const res = await fetch(base + path, {
    headers: { accept: 'application/json' },
    cache: 'no-store',
  });
  const body = (await res.json().catch(() => ({}))) as T & { error?: string };
  if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
  return body;
}

function show(id: string, text: string, failed = false): void {
  const node = byId(id);
  node.hidden = !text;
  node.textContent = text;
  node.classList.toggle('failed', failed);
}

function card(testid: string, label: string, text: string, value: number | null): HTMLElement {
  return el(
    'div',
    { class: 'card' },
    el('span', { class: 'label' }, label),
    el('span', { class: 'value', 'data-testid': testid, 'data-value': value }, text),
  );
}

function table(headers: ReadonlyArray<[string, string?]>, rows: Node[], empty: string) {
  if (rows.length === 0) return el('p', { class: 'muted' }, empty);
  return el(
    'table',
    {},
    el('thead', {}, el('tr', {}, ...headers.map(([text, cls]) => el('th', { class: cls }, text)))),
    el('tbody', {}, ...rows),
  );
}

function button(
  label: string,
  onClick: (source: HTMLButtonElement) => void,
  danger = false,
): HTMLButtonElement {
  const b = el(
    'button',
    {
      type: 'button',
      class: danger ? 'danger' : undefined,
      'data-action': label.toLowerCase(),
    },
    label,
  ) as HTMLButtonElement;
  b.addEventListener('click', () => onClick(b));
  return b;
}

async function act(
  what: string,
  path: string,
  source: HTMLButtonElement,
  question?: string,
): Promise<void> {
  if (question && !confirm(question)) return;
  source.disabled = true;
  show('notice', `${what}...`);
  try {
    const res = await fetch(base + path, {
      method: 'POST',
      headers: { [HEADER]: '1' },
      cache: 'no-store',
    });
    const body = (await res.json().catch(() => ({}))) as PageWorkResult & { error?: string };
    if (!res.ok) throw new Error(body.error || String(res.status));
    const failed = body.failed ?? [];
    const detail = failed.length > 0 ? `, ${failed.length} failed: ${failed[0]?.error}` : '';
    show('notice', `${what}: ${body.done} done${detail}`, failed.length > 0);
  } catch (error) {
    show('notice', `${what} failed: ${errorText(error)}`, true);
  }
  await refresh();
}

/** Runs `act` from a button: a click handler cannot wait for it, and `act` never rejects. */
const clicked = (what: string, path: string, question?: string) => (source: HTMLButtonElement) =>
  void act(what, path, source, question);

function renderStatus(status: PageStatus): void {
  const t = status.status.total;
  const r = status.rates;
  byId('meta').textContent =
    `schema ${status.status.schema} \u00b7 ` +
    `${readOnly ? 'read-only' : 'replay and purge enabled'} \u00b7 updated ${new Date().toLocaleTimeString()}`;
  byId('totals').replaceChildren(
    card('total-pending', 'pending', String(t.pending), t.pending),
    card(
      'total-oldest',
      'oldest pending',
      age(t.oldestPendingAgeSeconds),
      t.oldestPendingAgeSeconds,
    ),
    card('total-retrying', 'retrying', String(t.retrying), t.retrying),
    card('total-parked', 'parked', String(t.parked), t.parked),
    card('rate-published', 'published', perSecond(r.publishedPerSecond), r.publishedPerSecond),
    card('rate-written', 'written', perSecond(r.writtenPerSecond), r.writtenPerSecond),
  );
  byId('exchanges').replaceChildren(
    table(
      [['exchange'], ['pending', 'num'], ['oldest', 'num'], ['retrying', 'num'], ['parked', 'num']],
      status.status.exchanges.map((e) =>
        el(
          'tr',
          { 'data-exchange': e.exchange },
          el('td', {}, e.exchange),
          el('td', { class: 'num', 'data-col': 'pending' }, String(e.pending)),
          el('td', { class: 'num' }, age(e.oldestPendingAgeSeconds)),
          el(
            'td',
            { class: 'num', 'data-col': 'retrying', title: e.lastError ?? undefined },
            String(e.retrying),
          ),
          el('td', { class: 'num', 'data-col': 'parked' }, String(e.parked)),
        ),
      ),
      'Nothing pending or parked.',
    ),
  );
}

function renderParked(parked: PageDeadLetters['parked']): void {
  const id = encodeURIComponent;
  const shown = parked.rows.length < parked.total ? ` (showing ${parked.rows.length})` : '';
  byId('parked-summary').textContent = `${parked.total}${shown}`;
  byId('parked-actions').replaceChildren(
    ...(readOnly || parked.total === 0
      ? []
      : [
          button(
            'Replay all',
            clicked(
              'Replay all parked rows',
              'api/parked/replay',
              `Move all ${parked.total} parked rows back to the outbox?`,
            ),
          ),
          button(
            'Purge all',
            clicked(
              'Purge all parked rows',
              'api/parked/purge',
              `Delete all ${parked.total} parked rows for good?`,
            ),
            true,
          ),
        ]),
  );
  byId('parked').replaceChildren(
    table(
      [
        ['id'],
        ['message id'],
        ['exchange'],
        ['routing key'],
        ['reason'],
        ['attempts', 'num'],
        ['parked at'],
        [''],
      ],
      parked.rows.map((m) =>
        el(
          'tr',
          { 'data-parked-id': m.id, 'data-message-id': m.messageId },
          el('td', {}, m.id),
          el('td', { class: 'wrap' }, m.messageId),
          el('td', {}, m.exchange),
          el('td', {}, m.routingKey),
          el('td', { class: 'wrap', title: m.lastError || undefined }, m.reason),
          el('td', { class: 'num' }, String(m.attempts)),
          el('td', {}, when(m.parkedAt)),
          el(
            'td',
            {},
            el(
              'div',
              { class: 'actions' },
              ...(readOnly
                ? []
                : [
                    button(
                      'Replay',
                      clicked(`Replay row ${m.id}`, `api/parked/${id(m.id)}/replay`),
                    ),
                    button(
                      'Purge',
                      clicked(
                        `Purge row ${m.id}`,
                        `api/parked/${id(m.id)}/purge`,
                        `Delete parked row ${m.id} for good?`,
                      ),
                      true,
                    ),
                  ]),
            ),
          ),
        ),
      ),
      'No parked rows.',
    ),
  );
}

function renderQueue(q: PageQueue): HTMLElement {
  const id = encodeURIComponent;
  const path = `api/queues/${id(q.queue)}`;
  const actions =
    readOnly || !q.depth
      ? []
      : [
          button(
            'Replay all',
            clicked(
              `Replay ${q.deadLetterQueue}`,
              `${path}/replay`,
              `Replay all ${q.depth} dead letters of ${q.queue}?`,
            ),
          ),
          button(
            'Purge all',
            clicked(
              `Purge ${q.deadLetterQueue}`,
              `${path}/purge`,
              `Delete all ${q.depth} dead letters of ${q.queue} for good?`,
            ),
            true,
          ),
        ];
  const body = q.error
    ? el('p', { class: 'muted' }, `Unavailable: ${q.error}`)
    : table(
        [
          ['message id'],
          ['exchange'],
          ['routing key'],
          ['reason'],
          ['error'],
          ['attempts', 'num'],
          ['dead at'],
          [''],
        ],
        (q.messages ?? []).map((d) =>
          el(
            'tr',
            { 'data-message-id': d.messageId },
            el('td', { class: 'wrap' }, d.messageId || '-'),
            el('td', {}, d.exchange || '-'),
            el('td', {}, d.routingKey || '-'),
            el('td', {}, d.reason || '-'),
            el('td', { class: 'wrap' }, d.error || '-'),
            el('td', { class: 'num' }, d.attempts === null ? '-' : String(d.attempts)),
            el('td', {}, when(d.deadAt)),
            el(
              'td',
              {},
              el(
                'div',
                { class: 'actions' },
                ...(readOnly || !d.messageId
                  ? []
                  : [
                      button(
                        'Replay',
                        clicked(
                          `Replay ${d.messageId}`,
                          `${path}/messages/replay?id=${id(d.messageId)}`,
                        ),
                      ),
                      button(
                        'Purge',
                        clicked(
                          `Purge ${d.messageId}`,
                          `${path}/messages/purge?id=${id(d.messageId)}`,
                          `Delete dead letter ${d.messageId} for good?`,
                        ),
                        true,
                      ),
                    ]),
              ),
            ),
          ),
        ),
        'No dead letters.',
      );
  return el(
    'section',
    { 'data-queue': q.queue },
    el(
      'h3',
      {},
      `${q.deadLetterQueue} `,
      el('span', { class: 'muted' }, '('),
      el(
        'span',
        { 'data-testid': 'dlq-depth', 'data-value': q.depth },
        q.depth === null ? '-' : String(q.depth),
      ),
      el('span', { class: 'muted' }, ' messages)'),
    ),
    el('div', { class: 'actions' }, ...actions),
    body,
  );
}

function render(status: PageStatus, dead: PageDeadLetters): void {
  readOnly = !status.allowReplay;
  renderStatus(status);
  renderParked(dead.parked);
  byId('queues').replaceChildren(...dead.queues.map(renderQueue));
  byId('queues-title').hidden = dead.queues.length === 0;
  renders += 1;
  document.body.dataset.renders = String(renders);
}

async function refresh(): Promise<void> {
  seq += 1;
  const mine = seq;
  clearTimeout(timer);
  let figures: [PageStatus, PageDeadLetters] | undefined;
  let failure: unknown;
  try {
    figures = await Promise.all([
      getJson<PageStatus>('api/status'),
      getJson<PageDeadLetters>('api/dead-letters'),
    ]);
  } catch (error) {
    failure = error;
  }
  // A later refresh (after a click) has the newer figures: this one's are dropped.
  if (mine !== seq) return;
  if (figures) {
    show('error', '');
    refreshMs = figures[0].refreshIntervalMs || refreshMs;
    render(...figures);
  } else {
    show('error', `Could not load the figures: ${errorText(failure)}`);
  }
  timer = setTimeout(refresh, refreshMs);
}

void refresh();
