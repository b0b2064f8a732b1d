// Health: small charts of what /metrics says, polled every 2 s while this view is open:
// calls decided per second by decision, refusals per second by reason, transactions and
// dialogs in flight. Rates are computed here from the counters' differences.

import { useEffect, useState } from 'preact/hooks';
import { ApiError, headers } from '../api';
import { ViewTitle } from '../components';
import { parseMetrics, sumBy, valueOf, type Sample } from '../metrics';

const EVERY_MS = 2000;
/** Points kept: three minutes. */
const POINTS = 90;

const DECISIONS = ['allow', 'deny', 'challenge'];
const REASONS = ['admission', 'authentication', 'rate_limit', 'overload', 'malformed', 'loop', 'unknown_dialog'];

interface Point {
  t: number;
  decisions: Record<string, number>;
  refusals: Record<string, number>;
  transactions: number | undefined;
  dialogs: number | undefined;
}

interface Reading {
  t: number;
  samples: Sample[];
}

type Status = { kind: 'loading' } | { kind: 'ok' } | { kind: 'absent' } | { kind: 'error'; why: string };

/** Per second between two readings; a counter that went down was reset (a restart). */
function rates(prev: Record<string, number>, now: Record<string, number>, seconds: number) {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(now)) {
    const before = prev[k] ?? 0;
    out[k] = (v >= before ? v - before : v) / seconds;
  }
  return out;
}

// Kept across visits to the view, like the live feed.
let history: Point[] = [];
let last: Reading | null = null;

function ingest(r: Reading): void {
  const decisions = sumBy(r.samples, 'sipscreen_decisions_total', 'decision');
  const refusals = sumBy(r.samples, 'sipscreen_refusals_total', 'reason');
  if (last) {
    const seconds = Math.max((r.t - last.t) / 1000, 0.001);
    history = [
      ...history,
      {
        t: r.t,
        decisions: rates(sumBy(last.samples, 'sipscreen_decisions_total', 'decision'), decisions, seconds),
        refusals: rates(sumBy(last.samples, 'sipscreen_refusals_total', 'reason'), refusals, seconds),
        transactions: valueOf(r.samples, 'sipscreen_transactions'),
        dialogs: valueOf(r.samples, 'sipscreen_dialogs'),
      },
    ].slice(-POINTS);
  }
  last = r;
}

const fmt = (v: number) =>
  Number.isInteger(v) || v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, '');

/** The chart's span in points: it fills a minute first, then widens to all that is kept. */
const span = (n: number) => Math.min(POINTS, Math.max(n, 30));

/** A line chart of a few series over the kept points, as inline SVG. */
function Chart(props: {
  title: string;
  unit: string;
  series: { key: string; label: string; values: (number | undefined)[] }[];
}) {
  const W = 600;
  const H = 120;
  const all = props.series.flatMap((s) => s.values.filter((v): v is number => v !== undefined));
  const max = Math.max(1, ...all);
  const n = span(Math.max(0, ...props.series.map((s) => s.values.length)));
  const x = (i: number) => (W * i) / (n - 1);
  const y = (v: number) => H - (H * v) / max;
  // A series at zero is drawn too: a flat line says "none" as plainly as a number does.
  const shown = props.series.filter((s) => s.values.some((v) => v !== undefined));
  const latest = (s: { values: (number | undefined)[] }) => s.values[s.values.length - 1];
  const summary = props.series.map((s) => `${s.label} ${fmt(latest(s) ?? 0)}`).join(', ');
  return (
    <figure class="chart">
      <figcaption>
        <span class="chart-title">{props.title}</span>
        <span class="muted small">{props.unit}</span>
      </figcaption>
      <div class="chart-body">
        <span class="axis-max" aria-hidden="true">
          {fmt(max)}
        </span>
        <svg viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label={`${props.title} now: ${summary}`}>
          {[0.25, 0.5, 0.75].map((f) => (
            <line key={f} class="gridline" x1={0} x2={W} y1={H * f} y2={H * f} />
          ))}
          {shown.map((s) => {
            const offset = n - s.values.length;
            const pts = s.values
              .map((v, i) => (v === undefined ? null : `${x(i + offset).toFixed(1)},${y(v).toFixed(1)}`))
              .filter(Boolean)
              .join(' ');
            return <polyline key={s.key} class={`series s-${s.key}`} points={pts} vector-effect="non-scaling-stroke" />;
          })}
        </svg>
        <div class="axis-time" aria-hidden="true">
          <span>−{((n - 1) * EVERY_MS) / 1000} s</span>
          <span>now</span>
        </div>
      </div>
      <ul class="legend">
        {props.series.map((s) => (
          <li key={s.key} class={latest(s) ? undefined : 'quiet'}>
            <span class={`swatch s-${s.key}`} aria-hidden="true" />
            {s.label} <strong>{fmt(latest(s) ?? 0)}</strong>
          </li>
        ))}
      </ul>
    </figure>
  );
}

export function HealthView() {
  const [status, setStatus] = useState<Status>({ kind: 'loading' });
  const [points, setPoints] = useState<Point[]>(history);
  const [retry, setRetry] = useState(0);

  useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const poll = async () => {
      try {
        const res = await fetch('/metrics', { headers: headers(), cache: 'no-store' });
        if (stopped) return;
        if (res.status === 404) {
          setStatus({ kind: 'absent' });
          return; // nothing to poll: the Try again button asks once more
        }
        if (!res.ok) throw new ApiError(res.status, [`${res.status} ${(await res.text()).trim()}`]);
        ingest({ t: Date.now(), samples: parseMetrics(await res.text()) });
        setPoints(history);
        setStatus({ kind: 'ok' });
      } catch (e) {
        if (stopped) return;
        setStatus({ kind: 'error', why: e instanceof ApiError ? e.messages.join(' ') : (e as Error).message });
      }
      if (!stopped) timer = window.setTimeout(poll, EVERY_MS);
    };
    void poll();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, [retry]);

  const series = (pick: (p: Point) => number | undefined) => points.map(pick);
  return (
    <>
      <ViewTitle title="Health">
        What sipscreen is doing now, from its <code>/metrics</code> (polled every {EVERY_MS / 1000} s
        while this view is open).
      </ViewTitle>
      {status.kind === 'absent' && (
        <div class="notice warn" role="status">
          <strong>This sipscreen does not serve /metrics,</strong> so there is nothing to chart
          here (it answered 404).{' '}
          <button type="button" class="btn small" onClick={() => setRetry((n) => n + 1)}>
            Try again
          </button>
        </div>
      )}
      {status.kind === 'error' && (
        <div class="notice error" role="alert">
          <strong>/metrics could not be read:</strong> {status.why}
        </div>
      )}
      {status.kind !== 'absent' && (
        <>
          {status.kind === 'ok' && points.length === 0 && <p class="muted" role="status">Measuring…</p>}
          <div class="charts">
            <Chart
              title="Calls decided"
              unit="per second"
              series={DECISIONS.map((k) => ({ key: k, label: k, values: series((p) => p.decisions[k] ?? 0) }))}
            />
            <Chart
              title="Refusals"
              unit="per second, by reason"
              series={REASONS.map((k, i) => ({
                key: `r${i}`,
                label: k.replace('_', ' '),
                values: series((p) => p.refusals[k] ?? 0),
              }))}
            />
            <Chart
              title="In flight"
              unit="now"
              series={[
                { key: 'tx', label: 'transactions', values: series((p) => p.transactions) },
                { key: 'dlg', label: 'dialogs', values: series((p) => p.dialogs) },
              ]}
            />
          </div>
        </>
      )}
    </>
  );
}
