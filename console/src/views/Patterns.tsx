// ACL patterns: what a Call ACL rule matches, a regular expression over the E.164 number
// (without `+`) or a list of numbers. The brand's patterns are inherited by every tenant; a
// tenant's pattern of the same name overrides the brand's for that tenant.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, send, seg } from '../api';
import { DeleteButton, described, Field, FormStatus, Group, lines, LoadError, Notice, ViewTitle } from '../components';
import { loadDirectory, type Directory } from '../directory';
import { noErrors, sortErrors, type FieldErrors } from '../errors';
import { useLoad, valueOf } from '../hooks';
import type { Pattern } from '../types';

const FIELDS = ['name', 'regex', 'numbers'] as const;

type Scope = 'tenant' | 'brand';

const base = (scope: Scope) => (scope === 'brand' ? '/1.1/brand/aclpatterns' : '/1.1/aclpatterns');

/** Which pattern is being edited: a new one (no name) or one of a scope. */
interface Editing {
  scope: Scope;
  name: string | null;
}

function Editor(props: {
  editing: Editing;
  pattern: Pattern | null;
  onSaved: (next: Editing | null, notice: string) => Promise<void>;
  onClose: () => void;
}) {
  const { pattern } = props;
  const [scope, setScope] = useState<Scope>(props.editing.scope);
  const [name, setName] = useState(pattern?.name ?? '');
  const [kind, setKind] = useState<'regex' | 'numbers'>(pattern?.numbers != null ? 'numbers' : 'regex');
  const [regex, setRegex] = useState(pattern?.regex ?? '');
  const [numbers, setNumbers] = useState((pattern?.numbers ?? []).join('\n'));
  const [errors, setErrors] = useState<FieldErrors>(noErrors);
  const [refused, setRefused] = useState(false);
  const form = useRef<HTMLFormElement>(null);

  useEffect(() => {
    form.current?.querySelector<HTMLElement>('input, select')?.focus();
  }, [pattern?.name]);

  const fail = (e: unknown) => {
    setErrors(sortErrors(e instanceof ApiError ? e.messages : [String(e)], FIELDS));
    setRefused(true);
    requestAnimationFrame(() => form.current?.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus());
  };

  const submit = async (e: Event) => {
    e.preventDefault();
    // A pattern changed from one kind to the other loses the old one.
    const body: Record<string, unknown> =
      kind === 'regex' ? { name: name.trim(), regex } : { name: name.trim(), numbers: lines(numbers) };
    if (pattern && kind === 'regex' && pattern.numbers != null) body.numbers = null;
    if (pattern && kind === 'numbers' && pattern.regex != null) body.regex = null;
    try {
      if (pattern) await send('PUT', `${base(scope)}/${seg(pattern.name)}`, body);
      else await send('POST', base(scope), body);
      const saved = String(body.name);
      await props.onSaved({ scope, name: saved }, `Saved ACL pattern “${saved}”: in force for the next call.`);
    } catch (err) {
      fail(err);
    }
  };

  const remove = async () => {
    if (!pattern) return;
    try {
      await send('DELETE', `${base(scope)}/${seg(pattern.name)}`);
      await props.onSaved(null, `Deleted ACL pattern “${pattern.name}”.`);
    } catch (err) {
      fail(err);
    }
  };

  return (
    <section class="editor" aria-labelledby="pattern-editor-title">
      <h2 id="pattern-editor-title">
        {pattern ? `${scope === 'brand' ? 'Brand' : 'Tenant'} ACL pattern “${pattern.name}”` : 'New ACL pattern'}
      </h2>
      <form ref={form} onSubmit={submit} noValidate>
        <FormStatus errors={errors} refused={refused} />
        {!pattern && (
          <Group id="pattern-scope" legend="Belongs to" field="scope" errors={errors}>
            <div class="segmented">
              {(['tenant', 'brand'] as const).map((s) => (
                <label key={s} class={scope === s ? 'on' : undefined}>
                  <input type="radio" name="pattern-scope" checked={scope === s} onChange={() => setScope(s)} />
                  {s === 'tenant' ? 'This tenant' : 'The brand (every tenant)'}
                </label>
              ))}
            </div>
          </Group>
        )}
        <Field id="pattern-name" label="Name" field="name" errors={errors}>
          <input
            {...described('pattern-name', errors, 'name')}
            value={name}
            autoComplete="off"
            onInput={(e) => setName(valueOf(e))}
          />
        </Field>
        <Group id="pattern-kind" legend="Matches" field="kind" errors={errors}>
          <div class="segmented">
            <label class={kind === 'regex' ? 'on' : undefined}>
              <input type="radio" name="pattern-kind" checked={kind === 'regex'} onChange={() => setKind('regex')} />
              A regular expression
            </label>
            <label class={kind === 'numbers' ? 'on' : undefined}>
              <input type="radio" name="pattern-kind" checked={kind === 'numbers'} onChange={() => setKind('numbers')} />
              A list of numbers
            </label>
          </div>
        </Group>
        {kind === 'regex' ? (
          <Field
            id="pattern-regex"
            label="Regular expression"
            field="regex"
            errors={errors}
            hint={
              <>
                Over the E.164 number without <code>+</code>: <code>^34[67][0-9]{'{8}'}$</code> is a
                Spanish mobile.
              </>
            }
          >
            <input
              {...described('pattern-regex', errors, 'regex', true)}
              class="mono"
              spellcheck={false}
              value={regex}
              onInput={(e) => setRegex(valueOf(e))}
            />
          </Field>
        ) : (
          <Field
            id="pattern-numbers"
            label="Numbers"
            field="numbers"
            errors={errors}
            hint={<>One E.164 number per line, such as <code>+34946002050</code>.</>}
          >
            <textarea
              {...described('pattern-numbers', errors, 'numbers', true)}
              class="mono"
              rows={4}
              spellcheck={false}
              value={numbers}
              onInput={(e) => setNumbers(valueOf(e))}
            />
          </Field>
        )}
        <div class="actions">
          <button type="submit" class="btn primary">
            {pattern ? 'Save' : 'Create'}
          </button>
          <button type="button" class="btn" onClick={props.onClose}>
            Close
          </button>
          <span class="spacer" />
          {pattern && <DeleteButton what={`“${pattern.name}”`} onDelete={remove} />}
        </div>
      </form>
    </section>
  );
}

function usedBy(d: Directory, name: string): string[] {
  return d.acls.filter((a) => a.rules.some((r) => r.pattern === name)).map((a) => a.name);
}

export function PatternsView({ tenant }: { tenant: string }) {
  const dir = useLoad(loadDirectory, [tenant]);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [notice, setNotice] = useState('');
  const d = dir.data;
  const open = (e: Editing) => {
    setNotice('');
    setEditing(e);
  };
  const rows: { scope: Scope; p: Pattern; note: string }[] = d
    ? [
        ...d.patterns.map((p) => ({
          scope: 'tenant' as const,
          p,
          note: d.brandPatterns.some((b) => b.name === p.name) ? 'overrides the brand’s' : '',
        })),
        ...d.brandPatterns.map((p) => ({
          scope: 'brand' as const,
          p,
          note: d.patterns.some((t) => t.name === p.name) ? 'overridden in this tenant' : '',
        })),
      ]
    : [];
  const current =
    editing && editing.name !== null
      ? ((editing.scope === 'brand' ? d?.brandPatterns : d?.patterns)?.find((p) => p.name === editing.name) ?? null)
      : null;
  return (
    <>
      <ViewTitle title="ACL patterns">
        What Call ACL rules match: a regular expression over the E.164 number, or a list of
        numbers. A tenant’s pattern overrides the brand’s of the same name.
      </ViewTitle>
      <LoadError error={dir.error} retry={dir.reload} />
      <Notice text={notice} />
      <div class="toolbar">
        <span class="muted">{d && `${d.patterns.length} tenant, ${d.brandPatterns.length} brand patterns`}</span>
        <span class="spacer" />
        <button type="button" class="btn primary" onClick={() => open({ scope: 'tenant', name: null })}>
          New ACL pattern
        </button>
      </div>
      <div class={editing ? 'split' : undefined}>
        {d && (
          <div class="table-wrap">
            <table class="grid">
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Belongs to</th>
                  <th scope="col">Matches</th>
                  <th scope="col">Used by</th>
                </tr>
              </thead>
              <tbody>
                {rows.map(({ scope, p, note }) => {
                  const selected = editing?.scope === scope && editing.name === p.name;
                  return (
                    <tr key={`${scope}-${p.name}`} class={selected ? 'selected' : note.startsWith('overridden') ? 'disabled' : undefined}>
                      <th scope="row">
                        <button type="button" class="link" aria-pressed={selected} onClick={() => open({ scope, name: p.name })}>
                          {p.name}
                        </button>
                      </th>
                      <td>
                        {scope}
                        {note && <span class="muted small"> · {note}</span>}
                      </td>
                      <td>
                        <span class="muted small">{p.regex != null ? 'regex ' : 'numbers '}</span>
                        <span class="mono">{p.regex != null ? p.regex : (p.numbers ?? []).join(' ')}</span>
                      </td>
                      <td>{usedBy(d, p.name).join(', ') || <span class="muted">—</span>}</td>
                    </tr>
                  );
                })}
              </tbody>
            </table>
          </div>
        )}
        {d && editing && (
          <Editor
            key={`${editing.scope}-${editing.name ?? ''}`}
            editing={editing}
            pattern={current}
            onSaved={async (next, text) => {
              await dir.reload();
              setEditing(next);
              setNotice(text);
            }}
            onClose={() => setEditing(null)}
          />
        )}
      </div>
    </>
  );
}
