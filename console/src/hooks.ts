import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import { ApiError } from './api';

interface Loaded<T> {
  data: T | undefined;
  error: ApiError | undefined;
  loading: boolean;
  /** Loads again; resolves once the new answer (or error) is in. */
  reload: () => Promise<void>;
}

/** Loads `load()` when `deps` change (and on `reload`); an answer that arrives after a newer
 * request was made is dropped, so a quick tenant switch cannot show the old tenant's data. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: ApiError; loading: boolean }>({
    loading: true,
  });
  const [version, setVersion] = useState(0);
  const latest = useRef(0);
  const waiting = useRef<(() => void)[]>([]);
  useEffect(() => {
    const mine = ++latest.current;
    setState((s) => ({ ...s, loading: true }));
    const done = () => waiting.current.splice(0).forEach((f) => f());
    load().then(
      (data) => {
        if (mine !== latest.current) return;
        setState({ data, loading: false });
        done();
      },
      (e: unknown) => {
        if (mine !== latest.current) return;
        setState((s) => ({
          data: s.data,
          error: e instanceof ApiError ? e : new ApiError(0, [String(e)]),
          loading: false,
        }));
        done();
      },
    );
  }, [...deps, version]);
  const reload = useCallback(
    () =>
      new Promise<void>((resolve) => {
        waiting.current.push(resolve);
        setVersion((v) => v + 1);
      }),
    [],
  );
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** The value of an input, select or textarea an event came from. */
export const valueOf = (e: Event) =>
  (e.currentTarget as HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement).value;

export const checkedOf = (e: Event) => (e.currentTarget as HTMLInputElement).checked;
