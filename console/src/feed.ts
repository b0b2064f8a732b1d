// The live feed of decisions (/1.1/events), kept while the console is open once the Live
// view has started it, so that switching views loses nothing. Bounded: the newest 1,000.

import { follow, type FeedState } from './sse';
import type { Decision } from './types';

export const KEPT = 1000;

export interface FeedSnapshot {
  rows: Decision[];
  state: FeedState;
  /** Decisions the server could not send because this feed fell behind. */
  missed: number;
  paused: boolean;
}

let snapshot: FeedSnapshot = { rows: [], state: { kind: 'stopped', why: 'not started' }, missed: 0, paused: false };
let running: AbortController | null = null;
const listeners = new Set<(s: FeedSnapshot) => void>();

function update(patch: Partial<FeedSnapshot>) {
  snapshot = { ...snapshot, ...patch };
  listeners.forEach((f) => f(snapshot));
}

export function subscribe(f: (s: FeedSnapshot) => void): () => void {
  listeners.add(f);
  f(snapshot);
  return () => listeners.delete(f);
}

export function start(): void {
  if (running) return;
  const mine = new AbortController();
  running = mine;
  void follow(
    '/1.1/events',
    (e) => {
      if (e.event === 'lagged') update({ missed: snapshot.missed + (Number(e.data) || 0) });
      if (e.event !== 'decision' || snapshot.paused) return;
      try {
        const d = JSON.parse(e.data) as Decision;
        update({ rows: [d, ...snapshot.rows].slice(0, KEPT) });
      } catch {
        // not a decision this console understands: skipped
      }
    },
    (state) => update({ state }),
    mine.signal,
  ).finally(() => {
    if (running === mine) running = null;
  });
}

/** Ends the feed (on sign-out) and forgets what it showed. */
export function stop(): void {
  running?.abort();
  running = null;
  update({ rows: [], missed: 0, state: { kind: 'stopped', why: 'signed out' } });
}

export const setPaused = (paused: boolean) => update({ paused });
export const clear = () => update({ rows: [], missed: 0 });
