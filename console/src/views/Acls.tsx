// Call ACLs (IvozProvider's): ordered rules of allow or deny by ACL pattern, tried by metric
// for external calls, then a default; and which users have each one. The editor saves the
// ACL, then moves the users whose ACL changed.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, send, seg } from '../api';
import {
  Badge,
  CheckList,
  DeleteButton,
  described,
  Field,
  FormStatus,
  Group,
  LoadError,
  Notice,
  ViewTitle,
} from '../components';
import { byMetric, describePattern, loadDirectory, patternsInForce, type Directory } from '../directory';
import { indexOf, noErrors, sortErrors, type FieldErrors } from '../errors';
import { useLoad, valueOf } from '../hooks';
import type { Acl, Mode } from '../types';

const FIELDS = ['name', 'default', 'rules', 'users'] as const;

interface RuleDraft {
  metric: string;
  pattern: string;
  action: Mode;
}

function changed(body: { name: string; default: Mode; rules: unknown[] }, was: Acl): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (body.name !== was.name) out.name = body.name;
  if (body.default !== was.default) out.default = body.default;
  if (JSON.stringify(body.rules) !== JSON.stringify(byMetric(was.rules))) out.rules = body.rules;
  return out;
}

function Editor(props: {
  d: Directory;
  editing: Acl | null;
  onSaved: (name: string | null, notice: string) => Promise<void>;
  onClose: () => void;
}) {
  const { d, editing } = props;
  const holders = (name: string | undefined) =>
    new Set(d.users.filter((u) => name !== undefined && u.call_acl === name).map((u) => u.name));
  const [name, setName] = useState(editing?.name ?? '');
  const [fallback, setFallback] = useState<Mode>(editing?.default ?? 'deny');
  const [rules, setRules] = useState<RuleDraft[]>(
    byMetric(editing?.rules ?? []).map((r) => ({ ...r, metric: String(r.metric) })),
  );
  const [users, setUsers] = useState(() => holders(editing?.name));
  const [errors, setErrors] = useState<FieldErrors>(noErrors);
  const [refused, setRefused] = useState(false);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  const patterns = patternsInForce(d);
  const patternNames = [...patterns.keys()].sort();

  useEffect(() => {
    form.current?.querySelector<HTMLElement>('input, select')?.focus();
  }, [editing?.name]);

  const fail = (messages: string[]) => {
    setErrors(sortErrors(messages, FIELDS));
    setRefused(true);
    requestAnimationFrame(() => form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus());
  };

  const setRule = (i: number, patch: Partial<RuleDraft>) =>
    setRules((rs) => rs.map((r, j) => (j === i ? { ...r, ...patch } : r)));
  const nextMetric = () => String(rules.reduce((m, r) => Math.max(m, Number(r.metric) || 0), 0) + 10);

  const submit = async (e: Event) => {
    e.preventDefault();
    const body = {
      name: name.trim(),
      default: fallback,
      // A metric that is not a number goes as typed: the API says what is wrong with it.
      rules: rules.map((r) => ({
        metric: /^-?\d+$/.test(r.metric.trim()) ? Number(r.metric) : r.metric,
        pattern: r.pattern,
        action: r.action,
      })),
    };
    setBusy(true);
    try {
      // Only what changed is written: the rest of the file stays as it was laid out.
      if (editing) await send('PUT', `/1.1/callacls/${seg(editing.name)}`, changed(body, editing));
      else await send('POST', '/1.1/callacls', body);
      // Then the users: those given the ACL, and those it was taken from.
      const before = holders(editing?.name);
      const problems: string[] = [];
      for (const u of d.users) {
        const now = users.has(u.name);
        if (now === before.has(u.name)) continue;
        try {
          await send('PUT', `/1.1/users/${seg(u.name)}`, { call_acl: now ? body.name : null });
        } catch (err) {
          problems.push(...(err instanceof ApiError ? err.messages : [String(err)]).map((m) => `${u.name}: ${m}`));
        }
      }
      await props.onSaved(
        body.name,
        problems.length === 0
          ? `Saved Call ACL “${body.name}”: in force for the next call.`
          : `Saved Call ACL “${body.name}”, but not every user: ${problems.join(' · ')}`,
      );
    } catch (err) {
      fail(err instanceof ApiError ? err.messages : [String(err)]);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!editing) return;
    try {
      await send('DELETE', `/1.1/callacls/${seg(editing.name)}`);
      await props.onSaved(null, `Deleted Call ACL “${editing.name}”.`);
    } catch (err) {
      fail(err instanceof ApiError ? err.messages : [String(err)]);
    }
  };

  const ruleErrors = new Set((errors.byField.rules ?? []).map(indexOf).filter((i) => i !== null));
  return (
    <section class="editor" aria-labelledby="acl-editor-title">
      <h2 id="acl-editor-title">{editing ? `Call ACL “${editing.name}”` : 'New Call ACL'}</h2>
      <form ref={form} onSubmit={submit} noValidate>
        <FormStatus errors={errors} refused={refused} />
        <Field id="acl-name" label="Name" field="name" errors={errors}>
          <input
            {...described('acl-name', errors, 'name')}
            value={name}
            autoComplete="off"
            onInput={(e) => setName(valueOf(e))}
          />
        </Field>
        <Group id="acl-rules" legend="Rules, tried by metric (lowest first)" field="rules" errors={errors}>
          <table class="grid rules-edit">
            <thead>
              <tr>
                <th scope="col">Metric</th>
                <th scope="col">ACL pattern</th>
                <th scope="col">Action</th>
                <th scope="col">
                  <span class="sr-only">Remove</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {rules.map((r, i) => (
                <tr key={i} class={ruleErrors.has(i) ? 'invalid' : undefined}>
                  <td>
                    <input
                      class="metric-input"
                      inputMode="numeric"
                      aria-label={`Rule ${i + 1} metric`}
                      aria-invalid={ruleErrors.has(i) ? 'true' : undefined}
                      value={r.metric}
                      onInput={(e) => setRule(i, { metric: valueOf(e) })}
                    />
                  </td>
                  <td>
                    <select
                      aria-label={`Rule ${i + 1} pattern`}
                      value={r.pattern}
                      onChange={(e) => setRule(i, { pattern: valueOf(e) })}
                    >
                      {!patterns.has(r.pattern) && <option value={r.pattern}>{r.pattern || '(choose)'}</option>}
                      {patternNames.map((p) => (
                        <option key={p} value={p}>
                          {p}
                          {patterns.get(p)?.scope === 'brand' ? ' (brand)' : ''}
                        </option>
                      ))}
                    </select>
                    <div class="muted small mono">{describePattern(patterns.get(r.pattern)?.pattern)}</div>
                  </td>
                  <td>
                    <select
                      aria-label={`Rule ${i + 1} action`}
                      value={r.action}
                      onChange={(e) => setRule(i, { action: valueOf(e) as Mode })}
                    >
                      <option value="allow">allow</option>
                      <option value="deny">deny</option>
                    </select>
                  </td>
                  <td>
                    <button
                      type="button"
                      class="btn small"
                      aria-label={`Remove rule ${i + 1}`}
                      title="Remove this rule"
                      onClick={() => setRules((rs) => rs.filter((_, j) => j !== i))}
                    >
                      ✕
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <button
            type="button"
            class="btn small"
            onClick={() =>
              setRules((rs) => [...rs, { metric: nextMetric(), pattern: patternNames[0] ?? '', action: 'deny' }])
            }
          >
            Add a rule
          </button>
        </Group>
        <Group id="acl-default" legend="When no rule matches" field="default" errors={errors}>
          <div class="segmented">
            {(['deny', 'allow'] as const).map((m) => (
              <label key={m} class={fallback === m ? `on ${m}` : undefined}>
                <input type="radio" name="acl-default" value={m} checked={fallback === m} onChange={() => setFallback(m)} />
                {m === 'deny' ? 'Deny' : 'Allow'}
              </label>
            ))}
          </div>
        </Group>
        <CheckList
          id="acl-users"
          legend="Users with this ACL"
          field="users"
          errors={errors}
          options={d.users.map((u) => ({
            name: u.name,
            note: `${u.extension}${u.call_acl && u.call_acl !== editing?.name ? ` · now ${u.call_acl}` : ''}`,
          }))}
          selected={users}
          onChange={setUsers}
        />
        <div class="actions">
          <button type="submit" class="btn primary" disabled={busy}>
            {editing ? 'Save' : 'Create'}
          </button>
          <button type="button" class="btn" onClick={props.onClose}>
            Close
          </button>
          <span class="spacer" />
          {editing && <DeleteButton what={`“${editing.name}”`} onDelete={remove} />}
        </div>
      </form>
    </section>
  );
}

export function AclsView({ tenant }: { tenant: string }) {
  const dir = useLoad(loadDirectory, [tenant]);
  const [editing, setEditing] = useState<string | null>(null);
  const [notice, setNotice] = useState('');
  const d = dir.data;
  const patterns = d ? patternsInForce(d) : new Map();
  const current = d?.acls.find((a) => a.name === editing) ?? null;
  const open = (name: string) => {
    setNotice('');
    setEditing(name);
  };
  return (
    <>
      <ViewTitle title="Call ACLs">
        Stage 1, for external calls: the rules are tried by metric, the first whose pattern
        matches the E.164 number allows or denies; else the default. An ACL deny is final.
      </ViewTitle>
      <LoadError error={dir.error} retry={dir.reload} />
      <Notice text={notice} />
      <div class="toolbar">
        <span class="muted">{d && `${d.acls.length} Call ACL${d.acls.length === 1 ? "" : "s"}`}</span>
        <span class="spacer" />
        <button type="button" class="btn primary" onClick={() => open('')}>
          New Call ACL
        </button>
      </div>
      <div class={editing !== null ? 'split' : undefined}>
        {d && (
          <div class="cards">
            {d.acls.length === 0 && <p class="muted">No Call ACL in this tenant.</p>}
            {d.acls.map((a) => {
              const users = d.users.filter((u) => u.call_acl === a.name).map((u) => u.name);
              return (
                <article key={a.name} class={a.name === editing ? 'card selected' : 'card'} aria-labelledby={`acl-${a.name}`}>
                  <h2 id={`acl-${a.name}`}>
                    <button type="button" class="link" aria-pressed={a.name === editing} onClick={() => open(a.name)}>
                      {a.name}
                    </button>
                  </h2>
                  <ol class="rules">
                    {byMetric(a.rules).map((r) => (
                      <li key={`${r.metric}-${r.pattern}`}>
                        <span class="metric">{r.metric}</span>
                        <span class="mono">{r.pattern}</span>
                        <span class="muted mono">{describePattern(patterns.get(r.pattern)?.pattern)}</span>
                        <Badge value={r.action} />
                      </li>
                    ))}
                    <li class="default">
                      <span class="metric">—</span>
                      <span>otherwise</span>
                      <span />
                      <Badge value={a.default} />
                    </li>
                  </ol>
                  <p class="small">
                    <span class="muted">Users: </span>
                    {users.length ? users.join(', ') : <span class="muted">none</span>}
                  </p>
                </article>
              );
            })}
          </div>
        )}
        {d && editing !== null && (
          <Editor
            key={editing}
            d={d}
            editing={current}
            onSaved={async (name, text) => {
              await dir.reload();
              setEditing(name);
              setNotice(text);
            }}
            onClose={() => setEditing(null)}
          />
        )}
      </div>
    </>
  );
}
