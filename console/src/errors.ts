// The API's errors by field: each message names the field it concerns before the first
// `:`, `[` or `.` ("extensions[0]: ...", "mode: ...", "rules[1].pattern: ..."); a message
// naming none of the form's fields (an object, the tenant) is the form's own.

export interface FieldErrors {
  /** Messages by field name. */
  byField: Record<string, string[]>;
  /** Messages that name no field of the form. */
  general: string[];
}

export const noErrors: FieldErrors = { byField: {}, general: [] };

/** The field a message names, when it is one of `fields`. */
function fieldOf(message: string, fields: readonly string[]): string | null {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)[[.:]/.exec(message);
  return m && fields.includes(m[1]) ? m[1] : null;
}

export function sortErrors(messages: string[], fields: readonly string[]): FieldErrors {
  const out: FieldErrors = { byField: {}, general: [] };
  for (const m of messages) {
    const f = fieldOf(m, fields);
    if (f) (out.byField[f] ??= []).push(m);
    else out.general.push(m);
  }
  return out;
}

/** The index a message gives inside a list field: `rules[1].pattern: ...` → 1. */
export function indexOf(message: string): number | null {
  const m = /^[A-Za-z_][A-Za-z0-9_]*\[(\d+)\]/.exec(message);
  return m ? Number(m[1]) : null;
}
