// The pieces every view is made of: a labelled field with its hint and the API's error,
// a form's own errors, decision badges, lists of checkboxes, a two-step delete.

import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ApiError } from './api';
import type { FieldErrors } from './errors';
import { checkedOf, valueOf } from './hooks';

/** A message of sipscreen's, its backquoted parts as code. */
export function Quoted({ text }: { text: string }) {
  return (
    <>
      {text.split('`').map((p, i) => (i % 2 === 1 ? <code key={i}>{p}</code> : p))}
    </>
  );
}

/** The attributes that tie an input to its label, hint and error. */
export function described(id: string, errors: FieldErrors, field: string, hint?: boolean) {
  const invalid = (errors.byField[field]?.length ?? 0) > 0;
  const ids = [hint ? `${id}-hint` : '', invalid ? `${id}-error` : ''].filter(Boolean).join(' ');
  return {
    id,
    'aria-invalid': invalid ? ('true' as const) : undefined,
    'aria-describedby': ids || undefined,
  };
}

export function Field(props: {
  id: string;
  label: string;
  field: string;
  errors: FieldErrors;
  hint?: ComponentChildren;
  children: ComponentChildren;
}) {
  const messages = props.errors.byField[props.field] ?? [];
  return (
    <div class={messages.length > 0 ? 'field invalid' : 'field'}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && (
        <p class="hint" id={`${props.id}-hint`}>
          {props.hint}
        </p>
      )}
      {messages.length > 0 && (
        <p class="field-error" id={`${props.id}-error`}>
          {messages.map((m, i) => (
            <span key={i}>
              {i > 0 && ' · '}
              <Quoted text={m} />
            </span>
          ))}
        </p>
      )}
    </div>
  );
}

/** A group of checkboxes or radios under one legend, with the errors of its field. */
export function Group(props: {
  id: string;
  legend: string;
  field: string;
  errors: FieldErrors;
  children: ComponentChildren;
}) {
  const messages = props.errors.byField[props.field] ?? [];
  return (
    <fieldset
      class={messages.length > 0 ? 'group invalid' : 'group'}
      aria-describedby={messages.length > 0 ? `${props.id}-error` : undefined}
    >
      <legend>{props.legend}</legend>
      {props.children}
      {messages.length > 0 && (
        <p class="field-error" id={`${props.id}-error`}>
          {messages.map((m, i) => (
            <span key={i}>
              {i > 0 && ' · '}
              <Quoted text={m} />
            </span>
          ))}
        </p>
      )}
    </fieldset>
  );
}

/** A refused submit: how many errors are at the fields, and those that name no field. */
export function FormStatus(props: { errors: FieldErrors; refused: boolean; title?: string }) {
  const { errors, refused } = props;
  const fieldCount = Object.values(errors.byField).reduce((n, m) => n + m.length, 0);
  return (
    <div role="alert">
        {refused && (
          <div class="notice error">
            <strong>{props.title ?? 'Not saved.'}</strong>{' '}
            {fieldCount > 0 && `${fieldCount} problem${fieldCount > 1 ? 's' : ''} shown at the fields. `}
            {errors.general.length > 0 && (
              <ul>
                {errors.general.map((m) => (
                  <li key={m}>
                    <Quoted text={m} />
                  </li>
                ))}
              </ul>
            )}
          </div>
        )}
    </div>
  );
}

export function Badge(props: { value: string }) {
  return <span class={`badge ${props.value}`}>{props.value}</span>;
}

/** A list of names to pick from, with a filter when it is long. */
export function CheckList(props: {
  id: string;
  legend: string;
  field: string;
  errors: FieldErrors;
  options: { name: string; note?: string }[];
  selected: Set<string>;
  onChange: (next: Set<string>) => void;
}) {
  const [filter, setFilter] = useState('');
  const f = filter.trim().toLowerCase();
  const shown = props.options.filter(
    (o) => !f || o.name.toLowerCase().includes(f) || (o.note ?? '').toLowerCase().includes(f),
  );
  const toggle = (name: string, on: boolean) => {
    const next = new Set(props.selected);
    if (on) next.add(name);
    else next.delete(name);
    props.onChange(next);
  };
  return (
    <Group id={props.id} legend={`${props.legend} (${props.selected.size})`} field={props.field} errors={props.errors}>
      {props.options.length > 8 && (
        <input
          class="filter"
          type="search"
          aria-label={`Filter ${props.legend.toLowerCase()}`}
          placeholder="Filter"
          value={filter}
          onInput={(e) => setFilter(valueOf(e))}
        />
      )}
      {props.options.length === 0 ? (
        <p class="muted">None in this tenant.</p>
      ) : (
        <ul class="checklist">
          {shown.slice(0, 200).map((o, i) => (
            <li key={o.name}>
              <input
                type="checkbox"
                id={`${props.id}-${i}`}
                checked={props.selected.has(o.name)}
                onChange={(e) => toggle(o.name, checkedOf(e))}
              />
              <label for={`${props.id}-${i}`}>
                {o.name}
                {o.note && <span class="muted"> {o.note}</span>}
              </label>
            </li>
          ))}
        </ul>
      )}
      {shown.length > 200 && <p class="muted">{shown.length - 200} more: filter to find them.</p>}
    </Group>
  );
}

/** Delete, in two steps: the first press asks, the second deletes. */
export function DeleteButton(props: { what: string; onDelete: () => void; disabled?: boolean }) {
  const [asking, setAsking] = useState(false);
  const confirm = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    if (asking) confirm.current?.focus();
  }, [asking]);
  if (!asking)
    return (
      <button type="button" class="btn danger" disabled={props.disabled} onClick={() => setAsking(true)}>
        Delete…
      </button>
    );
  return (
    <span class="confirm">
      <button type="button" ref={confirm} class="btn danger solid" onClick={props.onDelete}>
        Delete {props.what}
      </button>
      <button type="button" class="btn" onClick={() => setAsking(false)}>
        Keep it
      </button>
    </span>
  );
}

/** What the last change did, read out when it changes. */
export function Notice(props: { text: string }) {
  return (
    <p class={props.text ? 'notice ok' : 'notice-empty'} role="status">
      {props.text}
    </p>
  );
}

/** The title of a view; focused when the view opens, so that keyboard and screen reader
 * users start there. */
export function ViewTitle(props: { title: string; children?: ComponentChildren }) {
  const h = useRef<HTMLHeadingElement>(null);
  useEffect(() => h.current?.focus(), []);
  return (
    <header class="view-head">
      <h1 tabIndex={-1} ref={h}>
        {props.title}
      </h1>
      {props.children && <p class="lede">{props.children}</p>}
    </header>
  );
}

export function LoadError(props: { error: ApiError | undefined; retry: () => void }) {
  if (!props.error || props.error.status === 401) return null;
  return (
    <div class="notice error" role="alert">
      <strong>Could not load.</strong> {props.error.messages.join(' · ')}{' '}
      <button type="button" class="btn small" onClick={props.retry}>
        Try again
      </button>
    </div>
  );
}

/** Lines of a textarea as a list: trimmed, empty ones dropped. */
export const lines = (text: string) =>
  text
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);
