// The sipscreen console: a single page over the admin API (docs/admin-api.md), served by
// the admin listener itself. Hash routes (#/users, #/check?from=..&to=..) keep every view
// addressable without any server route but `/`.

import { render } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { ApiError, items, onUnauthorized, setTenant, setToken, tenant as savedTenant, token } from './api';
import { described, Field } from './components';
import { noErrors, type FieldErrors } from './errors';
import * as feed from './feed';
import { valueOf } from './hooks';
import type { Tenant } from './types';
import { AclsView } from './views/Acls';
import { CheckView, type CheckParams } from './views/Check';
import { HealthView } from './views/Health';
import { LiveView } from './views/Live';
import { PatternsView } from './views/Patterns';
import { PermissionsView } from './views/Permissions';
import { UsersView } from './views/Users';
import './style.css';

const VIEWS = [
  { id: 'users', label: 'Users', group: 'Rights' },
  { id: 'permissions', label: 'Call permissions', group: 'Rights' },
  { id: 'acls', label: 'Call ACLs', group: 'Rights' },
  { id: 'patterns', label: 'ACL patterns', group: 'Rights' },
  { id: 'check', label: 'Test a call', group: 'Diagnose' },
  { id: 'live', label: 'Live decisions', group: 'Diagnose' },
  { id: 'health', label: 'Health', group: 'Diagnose' },
] as const;

type ViewId = (typeof VIEWS)[number]['id'];

interface Route {
  view: ViewId;
  params: Record<string, string>;
}

function parseRoute(hash: string): Route {
  const [path, query] = hash.replace(/^#\/?/, '').split('?', 2);
  const view = VIEWS.find((v) => v.id === path)?.id ?? 'users';
  return { view, params: Object.fromEntries(new URLSearchParams(query ?? '')) };
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const on = () => setRoute(parseRoute(location.hash));
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return route;
}

/** Asks for a token: shown only once the API has answered 401. */
function Login(props: { rejected: boolean; onToken: (t: string) => void }) {
  const [value, setValue] = useState('');
  const errors: FieldErrors = props.rejected
    ? { byField: { token: ['This token is not accepted: check it against [admin] tokens.'] }, general: [] }
    : noErrors;
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), [props.rejected]);
  return (
    <main class="login" id="main">
      <form
        class="login-card"
        aria-labelledby="login-title"
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) props.onToken(value.trim());
        }}
      >
        <h1 id="login-title">
          <span class="logo" aria-hidden="true" />
          sipscreen console
        </h1>
        <p class="muted">This admin interface needs a token, one of the configuration’s <code>[admin] tokens</code>.</p>
        <Field id="token" label="Admin token" field="token" errors={errors} hint="Kept in this tab only, until it closes.">
          <input
            {...described('token', errors, 'token', true)}
            ref={input}
            type="password"
            autoComplete="current-password"
            value={value}
            onInput={(e) => setValue(valueOf(e))}
          />
        </Field>
        <button type="submit" class="btn primary wide">
          Sign in
        </button>
      </form>
    </main>
  );
}

type Session =
  | { kind: 'starting' }
  | { kind: 'login'; rejected: boolean }
  | { kind: 'ready'; tenants: Tenant[] }
  | { kind: 'failed'; why: string };

function App() {
  const route = useRoute();
  // One object per address, so that "Test a call" runs once for each link followed.
  const checkParams = useMemo<CheckParams>(
    () => ({ from: route.params.from, to: route.params.to, forwarded_by: route.params.forwarded_by }),
    [route],
  );
  const [session, setSession] = useState<Session>({ kind: 'starting' });
  const [tenant, setTenantState] = useState<string>(savedTenant() ?? '');

  const connect = async (rejectedIfRefused: boolean) => {
    try {
      const tenants = await items<Tenant>('/1.1/tenants');
      // The tenant kept from before, if it still exists; else the first.
      const keep = tenants.find((t) => t.name === savedTenant())?.name ?? tenants[0]?.name ?? '';
      setTenant(keep || null);
      setTenantState(keep);
      setSession({ kind: 'ready', tenants });
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        setToken(null);
        setSession({ kind: 'login', rejected: rejectedIfRefused });
      } else setSession({ kind: 'failed', why: e instanceof ApiError ? e.messages.join(' ') : String(e) });
    }
  };

  useEffect(() => {
    void connect(false);
    // A token that stops working (taken out of the configuration) brings the login back.
    return onUnauthorized(() => {
      feed.stop();
      setToken(null);
      setSession({ kind: 'login', rejected: false });
    });
  }, []);

  // A link may name the tenant it is about (a live decision of another tenant).
  useEffect(() => {
    const wanted = route.params.tenant;
    if (session.kind === 'ready' && wanted && wanted !== tenant && session.tenants.some((t) => t.name === wanted)) {
      setTenant(wanted);
      setTenantState(wanted);
    }
  }, [route, session]);

  if (session.kind === 'starting') return <p class="boot">Connecting to sipscreen…</p>;
  if (session.kind === 'failed')
    return (
      <main class="login" id="main">
        <div class="login-card notice error" role="alert">
          <h1>sipscreen cannot be reached</h1>
          <p>{session.why}</p>
          <button type="button" class="btn" onClick={() => void connect(false)}>
            Try again
          </button>
        </div>
      </main>
    );
  if (session.kind === 'login')
    return (
      <Login
        rejected={session.rejected}
        onToken={(t) => {
          setToken(t);
          void connect(true);
        }}
      />
    );

  const signOut = () => {
    feed.stop();
    setToken(null);
    setSession({ kind: 'login', rejected: false });
  };
  const current = VIEWS.find((v) => v.id === route.view) ?? VIEWS[0];
  return (
    <div class="shell">
      <a class="skip" href="#main" onClick={(e) => {
        e.preventDefault();
        document.querySelector<HTMLElement>('#main h1')?.focus();
      }}>
        Skip to content
      </a>
      <header class="topbar">
        <span class="brand">
          <span class="logo" aria-hidden="true" />
          sipscreen <span class="muted">console</span>
        </span>
        {session.tenants.length > 1 ? (
          <span class="tenant">
            <label for="tenant-select">Tenant</label>
            <select
              id="tenant-select"
              value={tenant}
              onChange={(e) => {
                setTenant(valueOf(e));
                setTenantState(valueOf(e));
              }}
            >
              {session.tenants.map((t) => (
                <option key={t.name} value={t.name}>
                  {t.name}
                </option>
              ))}
            </select>
          </span>
        ) : (
          <span class="tenant muted">Tenant {tenant}</span>
        )}
        <span class="spacer" />
        {token() ? (
          <button type="button" class="btn ghost" onClick={signOut}>
            Sign out
          </button>
        ) : (
          <span class="muted small" title="The admin listener has no tokens: only this machine reaches it">
            Local administration
          </span>
        )}
      </header>
      <nav class="sidebar" aria-label="Views">
        {['Rights', 'Diagnose'].map((g) => (
          <div key={g} class="nav-group">
            <h2 class="nav-title">{g}</h2>
            <ul>
              {VIEWS.filter((v) => v.group === g).map((v) => (
                <li key={v.id}>
                  <a href={`#/${v.id}`} aria-current={v.id === current.id ? 'page' : undefined}>
                    {v.label}
                  </a>
                </li>
              ))}
            </ul>
          </div>
        ))}
      </nav>
      <main id="main" class="content" key={`${current.id}-${tenant}`}>
        {current.id === 'users' && <UsersView tenant={tenant} />}
        {current.id === 'permissions' && <PermissionsView tenant={tenant} />}
        {current.id === 'acls' && <AclsView tenant={tenant} />}
        {current.id === 'patterns' && <PatternsView tenant={tenant} />}
        {current.id === 'check' && <CheckView tenant={tenant} params={checkParams} />}
        {current.id === 'live' && <LiveView tenant={tenant} />}
        {current.id === 'health' && <HealthView />}
      </main>
    </div>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
