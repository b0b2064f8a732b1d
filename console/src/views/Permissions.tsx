// Call permissions: the list, and an editor that creates, changes, associates (users,
// groups, outcalls, incalls) and deletes one. Every save is one request, checked by sipscreen
// as a whole; its errors are shown at the fields they name.

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
  lines,
  LoadError,
  Notice,
  ViewTitle,
} from '../components';
import { loadDirectory, type Directory } from '../directory';
import { noErrors, sortErrors, type FieldErrors } from '../errors';
import { checkedOf, useLoad, valueOf } from '../hooks';
import type { Mode, Permission } from '../types';

const FIELDS = [
  'name',
  'mode',
  'extensions',
  'password',
  'enabled',
  'description',
  'users',
  'groups',
  'outcalls',
  'incalls',
] as const;

type Links = 'users' | 'groups' | 'outcalls' | 'incalls';
const LINKS: readonly Links[] = ['users', 'groups', 'outcalls', 'incalls'];

interface Draft {
  name: string;
  mode: Mode;
  extensions: string;
  pin: string;
  clearPin: boolean;
  enabled: boolean;
  description: string;
  links: Record<Links, Set<string>>;
}

function draftOf(p: Permission | null): Draft {
  return {
    name: p?.name ?? '',
    mode: p?.mode ?? 'deny',
    extensions: (p?.extensions ?? []).join('\n'),
    pin: '',
    clearPin: false,
    enabled: p?.enabled ?? true,
    description: p?.description ?? '',
    links: {
      users: new Set(p?.users ?? []),
      groups: new Set(p?.groups ?? []),
      outcalls: new Set(p?.outcalls ?? []),
      incalls: new Set(p?.incalls ?? []),
    },
  };
}

/** The keys whose value the draft changes (the file is written only where it changes; the
 * order of links does not count). */
function changes(full: Record<string, unknown>, was: Permission): Record<string, unknown> {
  const same = (k: string, v: unknown) => {
    const old = (was as unknown as Record<string, unknown>)[k];
    if (LINKS.includes(k as Links)) return [...(v as string[])].sort().join('\n') === [...(old as string[])].sort().join('\n');
    return JSON.stringify(v) === JSON.stringify(old);
  };
  return Object.fromEntries(Object.entries(full).filter(([k, v]) => !same(k, v)));
}

/** A new permission's keys but those left at their defaults, so that the file says only
 * what was chosen. */
function withoutDefaults(full: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(full).filter(
      ([k, v]) => !(k === 'enabled' && v === true) && v !== '' && !(Array.isArray(v) && v.length === 0),
    ),
  );
}

function Editor(props: {
  d: Directory;
  editing: Permission | null;
  onSaved: (name: string | null, notice: string) => Promise<void>;
  onClose: () => void;
}) {
  const { d, editing } = props;
  const [draft, setDraft] = useState(() => draftOf(editing));
  const [errors, setErrors] = useState<FieldErrors>(noErrors);
  const [refused, setRefused] = useState(false);
  const [busy, setBusy] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  const set = (patch: Partial<Draft>) => setDraft((x) => ({ ...x, ...patch }));
  const setLink = (k: Links, v: Set<string>) => setDraft((x) => ({ ...x, links: { ...x.links, [k]: v } }));

  useEffect(() => {
    form.current?.querySelector<HTMLElement>('input, select, textarea')?.focus();
  }, [editing?.name]);

  const fail = (e: unknown) => {
    const messages = e instanceof ApiError ? e.messages : [String(e)];
    const sorted = sortErrors(messages, FIELDS);
    setErrors(sorted);
    setRefused(true);
    // The first field in error takes the focus, its message read with it.
    requestAnimationFrame(() =>
      form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus(),
    );
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    const full: Record<string, unknown> = {
      name: draft.name.trim(),
      mode: draft.mode,
      extensions: lines(draft.extensions),
      enabled: draft.enabled,
      description: draft.description,
      users: [...draft.links.users],
      groups: [...draft.links.groups],
      outcalls: [...draft.links.outcalls],
      incalls: [...draft.links.incalls],
    };
    const body = editing ? changes(full, editing) : withoutDefaults(full);
    if (draft.clearPin) body.password = null;
    else if (draft.pin) body.password = draft.pin;
    setBusy(true);
    try {
      if (editing) await send('PUT', `/1.1/callpermissions/${seg(editing.name)}`, body);
      else await send('POST', '/1.1/callpermissions', body);
      setErrors(noErrors);
      setRefused(false);
      await props.onSaved(String(full.name), `Saved “${full.name}”: in force for the next call.`);
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  };

  const remove = async () => {
    if (!editing) return;
    try {
      await send('DELETE', `/1.1/callpermissions/${seg(editing.name)}`);
      await props.onSaved(null, `Deleted “${editing.name}” and its associations.`);
    } catch (err) {
      fail(err);
    }
  };

  const groupMembers = new Map(d.groups.map((g) => [g.name, g.members.length]));
  return (
    <section class="editor" aria-labelledby="perm-editor-title">
      <h2 id="perm-editor-title">{editing ? `Call permission “${editing.name}”` : 'New call permission'}</h2>
      <form ref={form} onSubmit={submit} noValidate>
        <FormStatus errors={errors} refused={refused} />
        <Field id="perm-name" label="Name" field="name" errors={errors}>
          <input
            {...described('perm-name', errors, 'name')}
            value={draft.name}
            required
            autoComplete="off"
            onInput={(e) => set({ name: valueOf(e) })}
          />
        </Field>
        <Group id="perm-mode" legend="Mode" field="mode" errors={errors}>
          <div class="segmented">
            {(['deny', 'allow'] as const).map((m) => (
              <label key={m} class={draft.mode === m ? `on ${m}` : undefined}>
                <input
                  type="radio"
                  name="perm-mode"
                  value={m}
                  checked={draft.mode === m}
                  onChange={() => set({ mode: m })}
                />
                {m === 'deny' ? 'Deny' : 'Allow'}
              </label>
            ))}
          </div>
        </Group>
        <Field
          id="perm-extensions"
          label="Extensions"
          field="extensions"
          errors={errors}
          hint={
            <>
              One per line: an exact number (<code>1003</code>, <code>*21</code>) or a pattern starting
              with <code>_</code> (<code>_6XXXXXXXX</code>, <code>_00X.</code>).
            </>
          }
        >
          <textarea
            {...described('perm-extensions', errors, 'extensions', true)}
            rows={4}
            spellcheck={false}
            class="mono"
            value={draft.extensions}
            onInput={(e) => set({ extensions: valueOf(e) })}
          />
        </Field>
        <Field
          id="perm-pin"
          label={editing?.password_set ? 'New PIN' : 'PIN'}
          field="password"
          errors={errors}
          hint={
            editing?.password_set
              ? 'A PIN is set (never shown). Leave empty to keep it.'
              : 'Optional: a deny with a PIN asks the caller for it instead of refusing.'
          }
        >
          <input
            {...described('perm-pin', errors, 'password', true)}
            type="password"
            inputMode="numeric"
            autoComplete="new-password"
            value={draft.pin}
            disabled={draft.clearPin}
            onInput={(e) => set({ pin: valueOf(e) })}
          />
        </Field>
        {editing?.password_set && (
          <div class="check">
            <input
              id="perm-clear-pin"
              type="checkbox"
              checked={draft.clearPin}
              onChange={(e) => set({ clearPin: checkedOf(e), pin: '' })}
            />
            <label for="perm-clear-pin">Remove the PIN</label>
          </div>
        )}
        <div class="check">
          <input
            id="perm-enabled"
            type="checkbox"
            checked={draft.enabled}
            onChange={(e) => set({ enabled: checkedOf(e) })}
          />
          <label for="perm-enabled">Enabled</label>
        </div>
        <Field id="perm-description" label="Description" field="description" errors={errors}>
          <input
            {...described('perm-description', errors, 'description')}
            value={draft.description}
            onInput={(e) => set({ description: valueOf(e) })}
          />
        </Field>
        <h3 class="subhead">Applies to</h3>
        <div class="links">
          <CheckList
            id="perm-users"
            legend="Users"
            field="users"
            errors={errors}
            options={d.users.map((u) => ({ name: u.name, note: u.extension }))}
            selected={draft.links.users}
            onChange={(v) => setLink('users', v)}
          />
          <CheckList
            id="perm-groups"
            legend="Groups"
            field="groups"
            errors={errors}
            options={d.groups.map((g) => ({ name: g.name, note: `${groupMembers.get(g.name) ?? 0} members` }))}
            selected={draft.links.groups}
            onChange={(v) => setLink('groups', v)}
          />
          <CheckList
            id="perm-outcalls"
            legend="Outcalls"
            field="outcalls"
            errors={errors}
            options={d.outcalls.map((o) => ({ name: o.name, note: (o.patterns ?? []).join(' ') }))}
            selected={draft.links.outcalls}
            onChange={(v) => setLink('outcalls', v)}
          />
          <CheckList
            id="perm-incalls"
            legend="Incalls"
            field="incalls"
            errors={errors}
            options={d.incalls.map((o) => ({ name: o.name, note: o.did ?? '' }))}
            selected={draft.links.incalls}
            onChange={(v) => setLink('incalls', v)}
          />
        </div>
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

const names = (list: string[]) =>
  list.length === 0 ? <span class="muted">—</span> : list.join(', ');

export function PermissionsView({ tenant }: { tenant: string }) {
  const dir = useLoad(loadDirectory, [tenant]);
  // The permission being edited (by name), `''` for a new one, null when the editor is shut.
  const [editing, setEditing] = useState<string | null>(null);
  const [query, setQuery] = useState('');
  const [notice, setNotice] = useState('');
  const d = dir.data;
  const q = query.trim().toLowerCase();
  const shown = (d?.permissions ?? []).filter(
    (p) =>
      !q ||
      p.name.toLowerCase().includes(q) ||
      p.description.toLowerCase().includes(q) ||
      p.extensions.some((x) => x.toLowerCase().includes(q)),
  );
  const current = d?.permissions.find((p) => p.name === editing) ?? null;
  return (
    <>
      <ViewTitle title="Call permissions">
        Stage 2 rules: a permission allows or denies the numbers it lists to the users, groups,
        outcalls and incalls it applies to.
      </ViewTitle>
      <LoadError error={dir.error} retry={dir.reload} />
      <Notice text={notice} />
      <div class="toolbar">
        <label for="perm-search">Search</label>
        <input
          id="perm-search"
          type="search"
          placeholder="Name, description or extension"
          value={query}
          onInput={(e) => setQuery(valueOf(e))}
        />
        <span class="muted" role="status">
          {d && `${shown.length} of ${d.permissions.length}`}
        </span>
        <span class="spacer" />
        <button
          type="button"
          class="btn primary"
          onClick={() => {
            setNotice('');
            setEditing('');
          }}
        >
          New call permission
        </button>
      </div>
      <div class={editing !== null ? 'split' : undefined}>
        {d && (
          <div class="table-wrap">
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Mode</th>
                  <th scope="col">Extensions</th>
                  <th scope="col">Users</th>
                  <th scope="col">Groups</th>
                  <th scope="col">Outcalls</th>
                  <th scope="col">Incalls</th>
                </tr>
              </thead>
              <tbody>
                {shown.map((p) => (
                  <tr key={p.name} class={p.name === editing ? 'selected' : p.enabled ? undefined : 'disabled'}>
                    <th scope="row">
                      <button
                        type="button"
                        class="link"
                        aria-pressed={p.name === editing}
                        onClick={() => {
                          setNotice('');
                          setEditing(p.name);
                        }}
                      >
                        {p.name}
                      </button>
                      {p.description && <div class="muted small">{p.description}</div>}
                    </th>
                    <td>
                      <Badge value={p.mode} />
                      {p.password_set && <span class="tag">PIN</span>}
                      {!p.enabled && <span class="tag">disabled</span>}
                    </td>
                    <td class="mono">{p.extensions.join(', ')}</td>
                    <td>{names(p.users)}</td>
                    <td>{names(p.groups)}</td>
                    <td>{names(p.outcalls)}</td>
                    <td>{names(p.incalls)}</td>
                  </tr>
                ))}
                {shown.length === 0 && (
                  <tr>
                    <td colSpan={7} class="muted">
                      No call permission{q ? ' matches' : ' yet'}.
                    </td>
                  </tr>
                )}
              </tbody>
            </table>
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
