// The explanation of a decision (the lines of `sipscreen check`, docs/decisions.md) as a
// tree: indentation nests a rule under its stage and a permission under its tier. Each line
// is given a tone from its wording, so that what matched and what decided stand out.

type Tone = 'plain' | 'allow' | 'deny' | 'miss' | 'off' | 'verdict' | 'stage';

export interface TraceNode {
  text: string;
  tone: Tone;
  /** The line of the rule or permission that decided the call. */
  decided: boolean;
  children: TraceNode[];
}

function toneOf(line: string): Tone {
  const t = line.trim();
  if (/^stage \d/.test(t)) return 'stage';
  const acl = /→ matched: (allow|deny)$/.exec(t);
  if (acl) return acl[1] as Tone;
  if (/: matched by /.test(t)) return /^\S+ \(deny/.test(t) ? 'deny' : 'allow';
  if (/(→|:) no match$/.test(t)) return 'miss';
  if (/disabled, ignored$/.test(t)) return 'off';
  if (
    /decides:|^no permission matched|^an ACL deny is final|^PIN (accepted|rejected)|none assigned, allow|^no rule matched|default (allow|deny)$/.test(
      t,
    )
  )
    return 'verdict';
  return 'plain';
}

/** The rule or permission line that decided: stage 1's matched rule for `call_acl`, or for
 * `call_permission` the named permission's line in the tier that decided. */
function decidedBy(line: string, tierLine: string | null, stage: string, rules: string[], tier: string | null) {
  const t = line.trim();
  if (stage === 'call_acl')
    return rules.some((r) => t.startsWith(`metric `) && t.includes(` pattern ${r} (`)) && /→ matched/.test(t);
  if (stage === 'call_permission')
    return (
      tier !== null &&
      tierLine !== null &&
      tierLine.trim().startsWith(`${tier} tier `) &&
      rules.some((r) => t.startsWith(`${r} (`)) &&
      /: matched by /.test(t)
    );
  return false;
}

const depthOf = (line: string) => Math.floor((line.length - line.trimStart().length) / 2);

/** The explanation's lines as a tree, with what decided marked. */
export function traceTree(lines: string[], stage: string, rule: string | null): TraceNode[] {
  const rules = rule ? rule.split(',') : [];
  const tier = lines.map((l) => /^\s*(\w+) tier decides:/.exec(l)?.[1]).find((x) => x) ?? null;
  const root: TraceNode[] = [];
  const path: { depth: number; node: TraceNode }[] = [];
  let tierLine: string | null = null;
  for (const line of lines) {
    const depth = depthOf(line);
    if (depth === 1) tierLine = line;
    const node: TraceNode = {
      text: line.trim(),
      tone: toneOf(line),
      decided: decidedBy(line, tierLine, stage, rules, tier),
      children: [],
    };
    while (path.length > 0 && path[path.length - 1].depth >= depth) path.pop();
    (path.length > 0 ? path[path.length - 1].node.children : root).push(node);
    path.push({ depth, node });
  }
  return root;
}
