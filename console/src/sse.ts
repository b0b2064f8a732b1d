// Server-Sent Events over fetch(): EventSource cannot send the X-Auth-Token header, so the
// stream is read and parsed here (the WHATWG "event stream" format: `event:` and `data:`
// fields, a blank line ends an event, `:` starts a comment), with or without a token.

import { headers, reportUnauthorized, url } from './api';

interface ServerEvent {
  event: string;
  data: string;
}

/** Splits an event stream into events; fed chunks of text as they arrive. */
class EventParser {
  private buffer = '';
  private event = '';
  private data: string[] = [];

  push(chunk: string): ServerEvent[] {
    let text = this.buffer + chunk;
    // A `\r` at the end may be the first half of `\r\n`: it waits for the next chunk.
    const held = text.endsWith('\r') ? '\r' : '';
    if (held) text = text.slice(0, -1);
    const out: ServerEvent[] = [];
    const lines = text.split(/\r\n|\r|\n/);
    // The last piece has no line end yet: it waits for the next chunk too.
    this.buffer = (lines.pop() ?? '') + held;
    for (const line of lines) {
      if (line === '') {
        if (this.data.length > 0)
          out.push({ event: this.event || 'message', data: this.data.join('\n') });
        this.event = '';
        this.data = [];
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') this.event = value;
      else if (field === 'data') this.data.push(value);
    }
    return out;
  }
}

export type FeedState =
  | { kind: 'connecting' }
  | { kind: 'open' }
  | { kind: 'waiting'; seconds: number; why: string }
  | { kind: 'stopped'; why: string };

/** Follows `path` until `signal` aborts: reconnects after a lost connection (1 s, doubling up
 * to 30 s), stops on 401 (the login takes over). */
export async function follow(
  path: string,
  onEvent: (e: ServerEvent) => void,
  onState: (s: FeedState) => void,
  signal: AbortSignal,
): Promise<void> {
  let delay = 1;
  while (!signal.aborted) {
    onState({ kind: 'connecting' });
    let why: string;
    try {
      const h = headers();
      h.set('Accept', 'text/event-stream');
      const res = await fetch(url(path), { headers: h, signal, cache: 'no-store' });
      if (res.status === 401) {
        onState({ kind: 'stopped', why: 'a valid token is needed' });
        reportUnauthorized();
        return;
      }
      if (!res.ok || !res.body) {
        why = `${res.status}: ${(await res.text()).trim()}`;
      } else {
        onState({ kind: 'open' });
        delay = 1;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        const parser = new EventParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          parser.push(value).forEach(onEvent);
        }
        why = 'the feed ended';
      }
    } catch (e) {
      if (signal.aborted) return;
      why = (e as Error).message;
    }
    onState({ kind: 'waiting', seconds: delay, why });
    await new Promise((r) => setTimeout(r, delay * 1000));
    delay = Math.min(delay * 2, 30);
  }
}
