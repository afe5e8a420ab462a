import type { Sample } from './soak-samples.js';

/** A fault as the plot marks it: when it started, and its kind. */
export interface PlottedFault {
  readonly t: number;
  readonly kind: string;
}

interface Series {
  readonly name: string;
  readonly color: string;
  /** [seconds, value] points; null where nothing was measured. */
  readonly points: ReadonlyArray<readonly [number, number | null]>;
}

interface Panel {
  readonly title: string;
  readonly unit: string;
  readonly series: readonly Series[];
}

const WIDTH = 960;
const PANEL_HEIGHT = 170;
const MARGIN = { left: 64, right: 180, top: 34, bottom: 26 };
const SLOT_COLORS: Readonly<Record<string, string>> = {
  relay0: '#1f77b4',
  relay1: '#17becf',
  ordered: '#d62728',
  plain: '#ff7f0e',
};
const FAULT_COLORS = [
  '#7f7f7f',
  '#8c564b',
  '#e377c2',
  '#bcbd22',
  '#9467bd',
  '#2ca02c',
  '#1f77b4',
  '#d62728',
  '#ff7f0e',
  '#17becf',
  '#000000',
];

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A round step for about `ticks` ticks over `range`. */
function niceStep(range: number, ticks: number): number {
  const raw = range / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  return step ?? 10 * power;
}

/** Each process generation as its own line, coloured by slot: a respawn starts a new line. */
function processSeries(
  samples: readonly Sample[],
  metric: 'rssKb' | 'fds',
  scale: number,
): Series[] {
  const labels = [...new Set(samples.flatMap((s) => s.processes.map((p) => p.label)))];
  return labels.map((label) => {
    const slot = label.split('#')[0]!;
    const points: Array<readonly [number, number | null]> = [];
    for (const s of samples) {
      const p = s.processes.find((q) => q.label === label);
      if (p) points.push([s.t, p[metric] === null ? null : p[metric] / scale]);
    }
    return { name: slot, color: SLOT_COLORS[slot] ?? '#333333', points };
  });
}

function totalSeries(
  samples: readonly Sample[],
  name: string,
  color: string,
  value: (s: Sample) => number | null,
): Series {
  return { name, color, points: samples.map((s) => [s.t, value(s)] as const) };
}

/**
 * The resource trends of a soak as a self-contained SVG: RSS and descriptors per process
 * generation, Postgres backends and broker connections and channels, the backlog; faults as
 * ticks along the top of each panel, coloured by kind.
 */
export function plotSoak(
  samples: readonly Sample[],
  faults: readonly PlottedFault[],
  title: string,
): string {
  const queueTotal = (s: Sample) => {
    const values = Object.values(s.queues);
    return values.some((v) => v === null) ? null : values.reduce<number>((a, b) => a + (b ?? 0), 0);
  };
  const panels: Panel[] = [
    {
      title: 'RSS per process generation',
      unit: 'MB',
      series: processSeries(samples, 'rssKb', 1024),
    },
    {
      title: 'Open file descriptors per process generation',
      unit: 'fds',
      series: processSeries(samples, 'fds', 1),
    },
    {
      title: 'Postgres backends, RabbitMQ connections and channels (all of the soak)',
      unit: 'count',
      series: [
        totalSeries(samples, 'backends', '#2ca02c', (s) => s.backends),
        totalSeries(samples, 'connections', '#9467bd', (s) => s.connections),
        totalSeries(samples, 'channels', '#8c564b', (s) => s.channels),
      ],
    },
    {
      title: 'Backlog: outbox rows and queued messages',
      unit: 'messages',
      series: [
        totalSeries(samples, 'outbox rows', '#1f77b4', (s) => s.outbox),
        totalSeries(samples, 'queued', '#ff7f0e', queueTotal),
      ],
    },
  ];
  const kinds = [...new Set(faults.map((f) => f.kind))].sort();
  const colorOf = (kind: string) => FAULT_COLORS[kinds.indexOf(kind) % FAULT_COLORS.length]!;
  const tMax = Math.max(1, ...samples.map((s) => s.t), ...faults.map((f) => f.t));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const legendHeight = 18 * Math.ceil(kinds.length / 4) + 30;
  const height = 30 + panels.length * (PANEL_HEIGHT + MARGIN.top + MARGIN.bottom) + legendHeight;
  const x = (t: number) => MARGIN.left + (t / tMax) * plotWidth;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(title)}</text>`,
  ];
  let top = 30;
  const tStep = niceStep(tMax, 10);
  for (const panel of panels) {
    const y0 = top + MARGIN.top;
    const values = panel.series.flatMap((s) =>
      s.points.flatMap(([, v]) => (v === null ? [] : [v])),
    );
    const vMax = Math.max(1, ...values) * 1.1;
    const vStep = niceStep(vMax, 4);
    const y = (v: number) => y0 + PANEL_HEIGHT - (v / vMax) * PANEL_HEIGHT;
    out.push(
      `<text x="${MARGIN.left}" y="${y0 - 14}" font-size="12" font-weight="bold">${escapeXml(panel.title)}</text>`,
    );
    out.push(
      `<rect x="${MARGIN.left}" y="${y0}" width="${plotWidth}" height="${PANEL_HEIGHT}" fill="none" stroke="#999999"/>`,
    );
    for (let v = 0; v <= vMax; v += vStep) {
      out.push(
        `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eeeeee"/>`,
        `<text x="${MARGIN.left - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Number(v.toFixed(2))}</text>`,
      );
    }
    out.push(
      `<text x="14" y="${y0 + PANEL_HEIGHT / 2}" transform="rotate(-90 14 ${y0 + PANEL_HEIGHT / 2})" text-anchor="middle">${escapeXml(panel.unit)}</text>`,
    );
    for (let t = 0; t <= tMax; t += tStep) {
      out.push(
        `<text x="${x(t).toFixed(1)}" y="${y0 + PANEL_HEIGHT + 14}" text-anchor="middle">${t} s</text>`,
      );
    }
    for (const f of faults) {
      out.push(
        `<line x1="${x(f.t).toFixed(1)}" x2="${x(f.t).toFixed(1)}" y1="${y0}" y2="${y0 + 8}" stroke="${colorOf(f.kind)}" stroke-width="1.5"><title>${escapeXml(f.kind)} at ${f.t.toFixed(1)} s</title></line>`,
      );
    }
    for (const series of panel.series) {
      let path = '';
      let pen = false;
      for (const [t, v] of series.points) {
        // A thing that could not be asked (down, or not asked at this sample) is skipped.
        if (v === null) continue;
        path += `${pen ? 'L' : 'M'}${x(t).toFixed(1)},${y(v).toFixed(1)}`;
        pen = true;
      }
      if (path) {
        out.push(
          `<path d="${path}" fill="none" stroke="${series.color}" stroke-width="1.2"><title>${escapeXml(series.name)}</title></path>`,
        );
      }
    }
    const names = [...new Map(panel.series.map((s) => [s.name, s.color])).entries()];
    names.forEach(([name, color], i) => {
      const ly = y0 + 10 + i * 16;
      const lx = MARGIN.left + plotWidth + 12;
      out.push(
        `<line x1="${lx}" x2="${lx + 18}" y1="${ly}" y2="${ly}" stroke="${color}" stroke-width="2"/>`,
        `<text x="${lx + 24}" y="${ly + 4}">${escapeXml(name)}</text>`,
      );
    });
    top += MARGIN.top + PANEL_HEIGHT + MARGIN.bottom;
  }
  out.push(
    `<text x="${MARGIN.left}" y="${top + 4}">Faults (ticks along the top of each panel):</text>`,
  );
  kinds.forEach((kind, i) => {
    const lx = MARGIN.left + (i % 4) * 200;
    const ly = top + 20 + Math.floor(i / 4) * 18;
    out.push(
      `<line x1="${lx}" x2="${lx}" y1="${ly - 8}" y2="${ly + 2}" stroke="${colorOf(kind)}" stroke-width="3"/>`,
      `<text x="${lx + 8}" y="${ly}">${escapeXml(kind)} (${faults.filter((f) => f.kind === kind).length})</text>`,
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
