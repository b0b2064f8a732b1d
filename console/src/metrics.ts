// The Prometheus text exposition format (version 0.0.4), as /metrics serves it: one sample
// a line, `name{label="value",...} value [timestamp]`, `#` lines for HELP and TYPE.

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function number(s: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  return Number(s);
}

/** Every sample of an exposition; lines that do not parse are skipped. */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (!name) continue;
    let i = name.length;
    const labels: Record<string, string> = {};
    if (line[i] === '{') {
      i++;
      for (;;) {
        while (line[i] === ' ' || line[i] === ',') i++;
        if (line[i] === '}') {
          i++;
          break;
        }
        const key = /^[a-zA-Z_][a-zA-Z0-9_]*/.exec(line.slice(i))?.[0];
        if (!key || line[i + key.length] !== '=' || line[i + key.length + 1] !== '"') {
          i = -1;
          break;
        }
        i += key.length + 2;
        let value = '';
        while (i < line.length && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < line.length) {
            const c = line[i + 1];
            value += c === 'n' ? '\n' : c;
            i += 2;
          } else value += line[i++];
        }
        if (line[i] !== '"') {
          i = -1;
          break;
        }
        i++;
        labels[key] = value;
      }
      if (i < 0) continue;
    }
    const token = line.slice(i).trim().split(/\s+/)[0] ?? '';
    const value = number(token);
    if (token !== '' && (token === 'NaN' || !Number.isNaN(value))) out.push({ name, labels, value });
  }
  return out;
}

/** The sum of a family's samples by one label's value. */
export function sumBy(samples: Sample[], name: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of samples)
    if (s.name === name) {
      const k = s.labels[label] ?? '';
      out[k] = (out[k] ?? 0) + s.value;
    }
  return out;
}

/** The value of a family without labels (a gauge), if present. */
export function valueOf(samples: Sample[], name: string): number | undefined {
  return samples.find((s) => s.name === name)?.value;
}
