// Users with their effective rights at a glance: the Call ACL (stage 1, external calls),
// their groups, the call permissions that apply to them tier by tier (stage 2), whether
// their own PIN is set. A row opens to show the ACL's rules in metric order.

import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { Badge, LoadError, ViewTitle } from '../components';
import {
  byMetric,
  describePattern,
  loadDirectory,
  outcallTier,
  patternsInForce,
  rightsOf,
  type Applied,
  type Directory,
} from '../directory';
import { useLoad, valueOf } from '../hooks';
import type { User } from '../types';

/** Rows drawn at once: a tenant of 10,000 users is searched, not scrolled. */
const SHOWN = 200;

function PermissionChip({ a }: { a: Applied }) {
  const p = a.permission;
  const title = `${p.mode}${p.password_set ? ' with PIN' : ''}: ${p.extensions.join(', ')}`;
  return (
    <span class={`chip ${p.mode}${p.enabled ? '' : ' disabled'}`} title={title}>
      {p.name}
      {p.password_set && <span class="chip-note">PIN</span>}
      {a.via && <span class="chip-note">via {a.via}</span>}
      {!p.enabled && <span class="chip-note">disabled</span>}
    </span>
  );
}

function Tier({ title, applied }: { title: string; applied: Applied[] }) {
  return (
    <div class="tier">
      <h4>{title}</h4>
      {applied.length === 0 ? (
        <p class="muted">none</p>
      ) : (
        <ul class="plain">
          {applied.map((a) => (
            <li key={`${a.permission.name}-${a.via ?? ''}`}>
              <PermissionChip a={a} />{' '}
              <span class="mono muted">{a.permission.extensions.join(', ')}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function UserDetail({ d, u }: { d: Directory; u: User }) {
  const r = rightsOf(d, u);
  const patterns = patternsInForce(d);
  return (
    <div class="detail-grid">
      <section aria-label={`${u.name}: stage 1, Call ACL`}>
        <h3>Stage 1 · Call ACL</h3>
        {r.acl ? (
          <>
            <p>
              <strong>{r.acl.name}</strong>, rules in metric order; the first that matches
              decides external calls:
            </p>
            <ol class="rules">
              {byMetric(r.acl.rules).map((rule) => (
                <li key={`${rule.metric}-${rule.pattern}`}>
                  <span class="metric">{rule.metric}</span>
                  <span class="mono">{rule.pattern}</span>
                  <span class="muted mono">{describePattern(patterns.get(rule.pattern)?.pattern)}</span>
                  <Badge value={rule.action} />
                </li>
              ))}
              <li class="default">
                <span class="metric">—</span>
                <span>otherwise (default)</span>
                <span />
                <Badge value={r.acl.default} />
              </li>
            </ol>
          </>
        ) : (
          <p class="muted">No Call ACL: stage 1 lets external calls through.</p>
        )}
      </section>
      <section aria-label={`${u.name}: stage 2, call permissions`}>
        <h3>Stage 2 · Call permissions</h3>
        <Tier title="User tier" applied={r.permissions.filter((a) => a.tier === 'user')} />
        <Tier
          title={`Group tier${u.groups.length ? ` (${u.groups.join(', ')})` : ''}`}
          applied={r.permissions.filter((a) => a.tier === 'group')}
        />
        <Tier title="Outcall tier (calls the outcall routes)" applied={r.outcallTier} />
        <p class="muted">
          The first tier with a matching permission decides; a deny with a PIN asks for it.
        </p>
      </section>
      <section aria-label={`${u.name}: identity`}>
        <h3>Identity</h3>
        <dl class="facts">
          <dt>Extension</dt>
          <dd class="mono">{u.extension}</dd>
          {u.uuid && (
            <>
              <dt>UUID</dt>
              <dd class="mono">{u.uuid}</dd>
            </>
          )}
          <dt>Country</dt>
          <dd>{u.country ?? 'the tenant’s'}</dd>
          <dt>Own PIN</dt>
          <dd>{u.call_permission_password_set ? 'set (overrides permissions’ PINs)' : 'not set'}</dd>
          <dt>Digest login</dt>
          <dd>{u.auth_password_set || u.auth_ha1_set ? 'set' : 'none'}</dd>
        </dl>
        <a class="btn small" href={`#/check?from=${encodeURIComponent(u.extension)}`}>
          Test a call from {u.name}
        </a>
      </section>
    </div>
  );
}

export function UsersView({ tenant }: { tenant: string }) {
  const dir = useLoad(loadDirectory, [tenant]);
  const [query, setQuery] = useState('');
  const [open, setOpen] = useState<string | null>(null);
  const d = dir.data;
  const q = query.trim().toLowerCase();
  const matches = d
    ? d.users.filter((u) => !q || u.name.toLowerCase().includes(q) || u.extension.toLowerCase().includes(q))
    : [];
  const outcalls = d ? outcallTier(d) : [];
  return (
    <>
      <ViewTitle title="Users">
        What each user may call: the Call ACL decides external calls first, then call
        permissions tier by tier.
      </ViewTitle>
      <LoadError error={dir.error} retry={dir.reload} />
      <div class="toolbar">
        <label for="user-search">Search</label>
        <input
          id="user-search"
          type="search"
          placeholder="Name or extension"
          value={query}
          onInput={(e) => setQuery(valueOf(e))}
        />
        <span class="muted" role="status" aria-live="polite">
          {d ? `${matches.length} of ${d.users.length} users` : dir.loading ? 'Loading…' : ''}
          {matches.length > SHOWN && `, the first ${SHOWN} shown`}
        </span>
      </div>
      {outcalls.length > 0 && (
        <p class="note">
          <strong>Outcall tier:</strong> every user’s calls routed by these outcalls also meet{' '}
          {outcalls.map((a, i) => (
            <Fragment key={`${a.permission.name}-${a.via}`}>
              {i > 0 && ' '}
              <PermissionChip a={a} />
            </Fragment>
          ))}
        </p>
      )}
      {d && (
        <table class="grid users">
          <thead>
            <tr>
              <th scope="col">User</th>
              <th scope="col">Extension</th>
              <th scope="col">Call ACL</th>
              <th scope="col">Groups</th>
              <th scope="col">Call permissions (user, group tiers)</th>
              <th scope="col">PIN</th>
            </tr>
          </thead>
          <tbody>
            {matches.slice(0, SHOWN).map((u, i) => {
              const r = rightsOf(d, u);
              const isOpen = open === u.name;
              return (
                <Fragment key={u.name}>
                  <tr class={isOpen ? 'open' : undefined}>
                    <th scope="row">
                      <button
                        type="button"
                        class="disclosure"
                        aria-expanded={isOpen}
                        aria-controls={isOpen ? `user-detail-${i}` : undefined}
                        onClick={() => setOpen(isOpen ? null : u.name)}
                      >
                        {u.name}
                      </button>
                    </th>
                    <td class="mono">{u.extension}</td>
                    <td>
                      {r.acl ? (
                        <>
                          {r.acl.name}{' '}
                          <span class="muted">
                            {r.acl.rules.length} rule{r.acl.rules.length === 1 ? '' : 's'}, else{' '}
                          </span>
                          <Badge value={r.acl.default} />
                        </>
                      ) : (
                        <span class="muted">none</span>
                      )}
                    </td>
                    <td>{u.groups.length ? u.groups.join(', ') : <span class="muted">none</span>}</td>
                    <td class="chips">
                      {r.permissions.length ? (
                        r.permissions.map((a) => <PermissionChip key={`${a.permission.name}-${a.via ?? ''}`} a={a} />)
                      ) : (
                        <span class="muted">none</span>
                      )}
                    </td>
                    <td>{r.pin ? 'set' : <span class="muted">—</span>}</td>
                  </tr>
                  {isOpen && (
                    <tr class="detail" id={`user-detail-${i}`}>
                      <td colSpan={6}>
                        <UserDetail d={d} u={u} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
          </tbody>
        </table>
      )}
    </>
  );
}
