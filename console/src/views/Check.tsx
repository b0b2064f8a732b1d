// Test a call: what sipscreen would decide for a caller dialing a number (GET /1.1/check),
// with the explanation as a trace: the number's normalization, the Call ACL's rules tried in
// order, each tier's permissions; what matched is highlighted, what decided is marked.

import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, get } from '../api';
import { Badge, described, Field, FormStatus, Quoted, ViewTitle } from '../components';
import { noErrors, sortErrors, type FieldErrors } from '../errors';
import { traceTree, type TraceNode } from '../explain';
import { valueOf } from '../hooks';
import type { CheckResult } from '../types';

const FIELDS = ['from', 'to', 'forwarded_by', 'pin'] as const;

export interface CheckParams {
  from?: string;
  to?: string;
  forwarded_by?: string;
  pin?: string;
}

const TONE_LABEL: Partial<Record<TraceNode['tone'], string>> = {
  allow: 'matched',
  deny: 'matched',
};

function Trace({ nodes }: { nodes: TraceNode[] }) {
  return (
    <ul class="trace">
      {nodes.map((n, i) => (
        <li key={i} class={`t-${n.tone}${n.decided ? ' decided' : ''}`}>
          <span class="t-line">
            {TONE_LABEL[n.tone] && <span class={`t-mark ${n.tone}`}>{TONE_LABEL[n.tone]}</span>}
            <Quoted text={n.text} />
            {n.decided && <strong class="t-decided">decided the call</strong>}
          </span>
          {n.children.length > 0 && <Trace nodes={n.children} />}
        </li>
      ))}
    </ul>
  );
}

function Result({ r }: { r: CheckResult }) {
  const stages = r.explanation.findIndex((l) => /^stage \d/.test(l));
  const before = stages < 0 ? r.explanation : r.explanation.slice(0, stages);
  const after = stages < 0 ? [] : r.explanation.slice(stages);
  return (
    <article class={`result ${r.decision}`} aria-labelledby="check-result-title">
      <header class="verdict">
        <h2 id="check-result-title">
          <Badge value={r.decision} />
          <span class="sr-only">: </span>
          <span class="reason">{r.reason}</span>
        </h2>
        <dl class="facts inline">
          <dt>Tenant</dt>
          <dd>{r.tenant}</dd>
          <dt>Identity</dt>
          <dd>{r.identity ?? 'unknown caller'}{r.forwarded ? ' (forwarded)' : ''}</dd>
          <dt>Call</dt>
          <dd>{r.call}</dd>
          <dt>E.164</dt>
          <dd class="mono">{r.e164 ?? '—'}</dd>
          {r.outcall && (
            <>
              <dt>Outcall</dt>
              <dd>{r.outcall}</dd>
            </>
          )}
          {r.incall && (
            <>
              <dt>Incall</dt>
              <dd>{r.incall}</dd>
            </>
          )}
          <dt>Stage</dt>
          <dd>{r.stage}</dd>
          <dt>Rule</dt>
          <dd class="mono rule">{r.rule ?? '—'}</dd>
          {r.next_hop && (
            <>
              <dt>Next hop</dt>
              <dd class="mono">{r.next_hop}</dd>
            </>
          )}
          {r.pin && (
            <>
              <dt>PIN</dt>
              <dd>{r.pin}</dd>
            </>
          )}
        </dl>
      </header>
      <section class="trace-section" aria-labelledby="trace-caller">
        <h3 id="trace-caller">Caller and number</h3>
        <Trace nodes={traceTree(before, r.stage, r.rule)} />
      </section>
      {after.length > 0 && (
        <section class="trace-section" aria-labelledby="trace-stages">
          <h3 id="trace-stages">Rules tried</h3>
          <Trace nodes={traceTree(after, r.stage, r.rule)} />
        </section>
      )}
    </article>
  );
}

export function CheckView(props: { tenant: string; params: CheckParams }) {
  const [form, setForm] = useState<CheckParams>(props.params);
  const [result, setResult] = useState<CheckResult | null>(null);
  const [errors, setErrors] = useState<FieldErrors>(noErrors);
  const [refused, setRefused] = useState(false);
  const [busy, setBusy] = useState(false);
  const formRef = useRef<HTMLFormElement>(null);
  const set = (patch: CheckParams) => setForm((f) => ({ ...f, ...patch }));

  const run = async (p: CheckParams) => {
    setBusy(true);
    try {
      const r = await get<CheckResult>('/1.1/check', {
        from: p.from?.trim(),
        to: p.to?.trim(),
        forwarded_by: p.forwarded_by?.trim(),
        pin: p.pin?.trim(),
      });
      setResult(r);
      setErrors(noErrors);
      setRefused(false);
    } catch (e) {
      setResult(null);
      setErrors(sortErrors(e instanceof ApiError ? e.messages : [String(e)], FIELDS));
      setRefused(true);
    } finally {
      setBusy(false);
    }
  };

  // A call opened from elsewhere (the live feed, a user) is tested at once.
  useEffect(() => {
    setForm(props.params);
    if (props.params.from && props.params.to) void run(props.params);
    else {
      setResult(null);
      // The first empty field is where typing starts.
      requestAnimationFrame(() =>
        formRef.current?.querySelector<HTMLInputElement>(props.params.from ? '#check-to' : '#check-from')?.focus(),
      );
    }
  }, [props.params, props.tenant]);

  return (
    <>
      <ViewTitle title="Test a call">
        What sipscreen decides for a call, without placing it: the same rules, the same order.
      </ViewTitle>
      <form
        ref={formRef}
        class="inline-form"
        noValidate
        onSubmit={(e) => {
          e.preventDefault();
          // The address says which call is shown (a link to it works), never the PIN.
          const shown = Object.entries({ ...form, pin: undefined }).filter(([, v]) => v) as [string, string][];
          history.replaceState(null, '', `#/check?${new URLSearchParams(shown).toString()}`);
          void run(form);
        }}
      >
        <Field id="check-from" label="Caller" field="from" errors={errors} hint="Extension, user name or number">
          <input
            {...described('check-from', errors, 'from', true)}
            class="mono"
            autoComplete="off"
            value={form.from ?? ''}
            onInput={(e) => set({ from: valueOf(e) })}
          />
        </Field>
        <Field id="check-to" label="Dialed" field="to" errors={errors} hint="As the phone sends it">
          <input
            {...described('check-to', errors, 'to', true)}
            class="mono"
            autoComplete="off"
            value={form.to ?? ''}
            onInput={(e) => set({ to: valueOf(e) })}
          />
        </Field>
        <Field id="check-forwarded" label="Forwarded by" field="forwarded_by" errors={errors} hint="Optional: a user">
          <input
            {...described('check-forwarded', errors, 'forwarded_by', true)}
            class="mono"
            autoComplete="off"
            value={form.forwarded_by ?? ''}
            onInput={(e) => set({ forwarded_by: valueOf(e) })}
          />
        </Field>
        <Field id="check-pin" label="PIN" field="pin" errors={errors} hint="Optional: answers a challenge">
          <input
            {...described('check-pin', errors, 'pin', true)}
            class="mono"
            inputMode="numeric"
            autoComplete="off"
            value={form.pin ?? ''}
            onInput={(e) => set({ pin: valueOf(e) })}
          />
        </Field>
        <div class="actions">
          <button type="submit" class="btn primary" disabled={busy}>
            Check
          </button>
        </div>
      </form>
      <FormStatus errors={errors} refused={refused} title="Not checked." />
      <div aria-live="polite" aria-busy={busy}>
        {result && <Result r={result} />}
      </div>
    </>
  );
}
