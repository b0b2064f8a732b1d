// Live decisions: every call sipscreen screens, as it is decided, newest first. A row opens
// the same call in "Test a call" to see why.

import { useEffect, useState } from 'preact/hooks';
import { Badge, ViewTitle } from '../components';
import { clear, KEPT, setPaused, start, subscribe, type FeedSnapshot } from '../feed';
import { checkedOf, valueOf } from '../hooks';
import type { Decision } from '../types';

/** The stage that decided, in a word (the reason says it in full). */
const STAGES: Record<string, string> = {
  call_acl: 'ACL',
  call_permission: 'permission',
  scope: 'out of scope',
  none: '',
};

function stateText(s: FeedSnapshot): string {
  switch (s.state.kind) {
    case 'connecting':
      return 'Connecting…';
    case 'open':
      return s.paused ? 'Paused: new decisions are not kept' : 'Live';
    case 'waiting':
      return `Connection lost (${s.state.why}); trying again in ${s.state.seconds} s`;
    case 'stopped':
      return `Stopped: ${s.state.why}`;
  }
}

/** The call a decision was about, as "Test a call" takes it: a forwarded call is tested as
 * forwarded by the user whose rights decided it. */
function checkLink(d: Decision): string {
  const q = new URLSearchParams();
  if (d.caller) q.set('from', d.caller);
  if (d.identity && d.forwarded) q.set('forwarded_by', d.identity);
  q.set('to', d.dialed);
  q.set('tenant', d.tenant);
  return `#/check?${q.toString()}`;
}

const time = (t: string) => {
  const d = new Date(t);
  return Number.isNaN(d.getTime())
    ? t
    : `${d.toLocaleTimeString(undefined, { hour12: false })}.${String(d.getMilliseconds()).padStart(3, '0')}`;
};

function matches(d: Decision, q: string): boolean {
  if (!q) return true;
  return [d.caller, d.identity, d.dialed, d.e164, d.decision, d.stage, d.rule, d.reason, d.source, d.call, d.call_id, d.tenant]
    .filter(Boolean)
    .some((v) => String(v).toLowerCase().includes(q));
}

export function LiveView({ tenant }: { tenant: string }) {
  const [feed, setFeed] = useState<FeedSnapshot | null>(null);
  const [query, setQuery] = useState('');
  const [decision, setDecision] = useState('');
  const [allTenants, setAllTenants] = useState(false);
  useEffect(() => {
    start();
    return subscribe(setFeed);
  }, []);
  if (!feed) return null;
  const q = query.trim().toLowerCase();
  const rows = feed.rows.filter(
    (d) => (allTenants || !tenant || d.tenant === tenant) && (!decision || d.decision === decision) && matches(d, q),
  );
  return (
    <>
      <ViewTitle title="Live decisions">
        Each call as sipscreen decides it, newest first (the last {KEPT} kept while this tab is
        open). Open one to see why.
      </ViewTitle>
      <div class="toolbar">
        <span class={`feed-state ${feed.state.kind}`} role="status">
          <span class="dot" aria-hidden="true" />
          {stateText(feed)}
        </span>
        <label for="live-filter">Filter</label>
        <input
          id="live-filter"
          type="search"
          placeholder="Caller, number, rule, reason…"
          value={query}
          onInput={(e) => setQuery(valueOf(e))}
        />
        <label for="live-decision">Decision</label>
        <select id="live-decision" value={decision} onChange={(e) => setDecision(valueOf(e))}>
          <option value="">any</option>
          <option value="allow">allow</option>
          <option value="deny">deny</option>
          <option value="challenge">challenge</option>
        </select>
        {tenant && (
          <span class="check">
            <input id="live-all" type="checkbox" checked={allTenants} onChange={(e) => setAllTenants(checkedOf(e))} />
            <label for="live-all">Every tenant</label>
          </span>
        )}
        <span class="spacer" />
        <span class="muted">
          {rows.length} of {feed.rows.length}
        </span>
        <button type="button" class="btn" aria-pressed={feed.paused} onClick={() => setPaused(!feed.paused)}>
          {feed.paused ? 'Resume' : 'Pause'}
        </button>
        <button type="button" class="btn" onClick={clear}>
          Clear
        </button>
      </div>
      {feed.missed > 0 && (
        <p class="notice warn">
          {feed.missed} decision{feed.missed > 1 ? 's were' : ' was'} not shown: this feed fell behind.
        </p>
      )}
      <div class="table-wrap">
        <table class="grid live">
          <thead>
            <tr>
              <th scope="col">Time</th>
              <th scope="col">Decision</th>
              <th scope="col">Caller</th>
              <th scope="col">Dialed</th>
              <th scope="col">E.164</th>
              <th scope="col">Rule</th>
              <th scope="col">Reason</th>
              <th scope="col">Source</th>
              {allTenants && <th scope="col">Tenant</th>}
            </tr>
          </thead>
          <tbody>
            {rows.map((d) => (
              <tr
                key={`${d.call_id}-${d.time}`}
                class="clickable"
                onClick={(e) => {
                  // A click anywhere on the row does what its link does.
                  if (!(e.target as HTMLElement).closest('a')) location.hash = checkLink(d);
                }}
              >
                <td class="mono nowrap">
                  <a href={checkLink(d)} title="Open this call in Test a call">
                    {time(d.time)}
                  </a>
                </td>
                <td>
                  <Badge value={d.decision} />
                </td>
                <td>
                  {d.identity ?? <span class="muted">unknown</span>}
                  {d.forwarded && <span class="tag">forwarded</span>}
                </td>
                <td class="mono" title={d.call}>
                  {d.dialed}
                </td>
                <td class="mono">{d.e164 ?? <span class="muted">—</span>}</td>
                <td class="nowrap">
                  {d.rule ? <span class="mono">{d.rule}</span> : <span class="muted">—</span>}{' '}
                  <span class="muted small">{STAGES[d.stage] ?? d.stage}</span>
                </td>
                <td class="reason-cell" title={d.reason}>
                  {d.reason}
                </td>
                <td class="mono muted">{d.source}</td>
                {allTenants && <td>{d.tenant}</td>}
              </tr>
            ))}
            {rows.length === 0 && (
              <tr>
                <td colSpan={allTenants ? 9 : 8} class="muted empty">
                  {feed.rows.length === 0 ? 'No call decided since this view opened.' : 'No decision matches the filter.'}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
    </>
  );
}
