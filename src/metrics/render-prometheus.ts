import { ConfigurationError } from '../errors/configuration-error.js';
import type { MetricSample } from './metric-sample.js';

/** The content type of the Prometheus text exposition format this renders. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/**
 * Renders samples in the Prometheus text exposition format (0.0.4): one `# HELP` and `# TYPE`
 * per metric (a histogram's `_bucket`, `_sum` and `_count` series share theirs), then its
 * series. Samples of one metric are grouped even when they come apart, since Prometheus
 * rejects a metric that appears twice.
 *
 * @example
 * http.createServer(async (_req, res) => {
 *   res.setHeader('content-type', PROMETHEUS_CONTENT_TYPE);
 *   res.end(renderPrometheus(await collectMetrics({ relay, pool })));
 * });
 */
export function renderPrometheus(samples: readonly MetricSample[]): string {
  checkSamples(samples);
  const byName = new Map<string, MetricSample[]>();
  for (const s of samples) {
    const family = s.family ?? s.name;
    const group = byName.get(family);
    if (group) group.push(s);
    else byName.set(family, [s]);
  }
  const lines: string[] = [];
  for (const [name, group] of byName) {
    const first = group[0]!;
    lines.push(`# HELP ${name} ${escapeHelp(first.help)}`);
    lines.push(`# TYPE ${name} ${first.type}`);
    for (const s of group) lines.push(`${s.name}${labelText(s.labels)} ${valueText(s.value)}`);
  }
  return lines.length === 0 ? '' : `${lines.join('\n')}\n`;
}

function labelText(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels);
  if (entries.length === 0) return '';
  return `{${entries.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`;
}

function escapeHelp(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n');
}

function escapeLabel(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('\n', '\\n').replaceAll('"', '\\"');
}

function valueText(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

/** The types Prometheus' text format knows, of those `MetricSample` takes. */
const SAMPLE_TYPES = ['counter', 'gauge', 'histogram'];

/**
 * Refuses anything but an array of samples, naming the first bad one: a string would be
 * rendered as "samples" named by each character, an `{}` as `# HELP undefined`.
 */
function checkSamples(samples: unknown): void {
  if (!Array.isArray(samples)) {
    throw new ConfigurationError(
      'samples',
      'must be an array of metric samples, such as the result of collectMetrics()',
    );
  }
  samples.forEach((sample: Partial<Record<keyof MetricSample, unknown>> | null, i) => {
    const valid =
      sample !== null &&
      typeof sample === 'object' &&
      typeof sample.name === 'string' &&
      /^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(sample.name) &&
      typeof sample.help === 'string' &&
      SAMPLE_TYPES.includes(sample.type as string) &&
      sample.labels !== null &&
      typeof sample.labels === 'object';
    if (!valid) {
      throw new ConfigurationError(
        `samples[${i}]`,
        'must be a metric sample { name, help, type (counter, gauge or histogram), labels, value }',
      );
    }
  });
}
