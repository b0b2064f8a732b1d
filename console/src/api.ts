// The admin API as the console calls it: every request carries this tab's token
// (X-Auth-Token) and tenant (Wazo-Tenant). The token lives in sessionStorage: it is gone
// when the tab closes, and no other site can read it.

const TOKEN_KEY = 'sipscreen.token';
const TENANT_KEY = 'sipscreen.tenant';

/** A refused or failed request: its status (0 when sipscreen could not be reached) and the
 * API's messages, each naming the field or object it concerns. */
export class ApiError extends Error {
  readonly status: number;
  readonly messages: string[];

  constructor(status: number, messages: string[]) {
    super(messages.join('\n') || `HTTP ${status}`);
    this.status = status;
    this.messages = messages;
  }
}

const unauthorized = new Set<() => void>();

/** Calls `f` whenever the API answers 401 (no token, or a token no longer valid). */
export function onUnauthorized(f: () => void): () => void {
  unauthorized.add(f);
  return () => unauthorized.delete(f);
}

/** Tells every listener that the API asked for a token. */
export function reportUnauthorized(): void {
  unauthorized.forEach((f) => f());
}

export function token(): string | null {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function tenant(): string | null {
  return sessionStorage.getItem(TENANT_KEY);
}

export function setTenant(value: string | null): void {
  if (value) sessionStorage.setItem(TENANT_KEY, value);
  else sessionStorage.removeItem(TENANT_KEY);
}

/** A header value must be visible ASCII: a tenant whose name is not goes in `?tenant=`. */
const headerSafe = (s: string) => /^[\x20-\x7e]*$/.test(s);

export function headers(json = false): Headers {
  const h = new Headers({ Accept: 'application/json' });
  const t = token();
  if (t) h.set('X-Auth-Token', t);
  const tn = tenant();
  if (tn && headerSafe(tn)) h.set('Wazo-Tenant', tn);
  if (json) h.set('Content-Type', 'application/json');
  return h;
}

export function url(path: string, params: Record<string, string | undefined> = {}): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  const tn = tenant();
  if (tn && !headerSafe(tn)) q.set('tenant', tn);
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** A path segment naming an object (names may hold spaces and the like). */
export const seg = encodeURIComponent;

async function messagesOf(res: Response): Promise<string[]> {
  const text = await res.text();
  try {
    const v: unknown = JSON.parse(text);
    if (Array.isArray(v)) return v.map(String);
  } catch {
    // not the API's JSON list: the text itself says what went wrong
  }
  return [text.trim() || `${res.status} ${res.statusText}`];
}

/** Sends one request; its JSON answer, `undefined` for 204, an ApiError otherwise. */
export async function send<T>(
  method: string,
  path: string,
  body?: unknown,
  params?: Record<string, string | undefined>,
): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url(path, params), {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, [`sipscreen cannot be reached: ${(e as Error).message}`]);
  }
  if (res.status === 401) reportUnauthorized();
  if (!res.ok) throw new ApiError(res.status, await messagesOf(res));
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

export const get = <T>(path: string, params?: Record<string, string | undefined>) =>
  send<T>('GET', path, undefined, params);

/** Every item of a list (lists are not paged unless asked). */
export const items = async <T>(path: string) =>
  (await get<{ items: T[] }>(path)).items;
