// A tenant's objects, loaded together, and what follows from them: the patterns in force
// (a tenant pattern overrides the brand's of the same name) and each user's effective rights
// in the order sipscreen applies them (docs/decisions.md): stage 1, the Call ACL's rules by
// metric then its default, for external calls; stage 2, call permissions tier by tier, the
// user's own, then their groups', then the outcall's.

import { items } from './api';
import type { Acl, Group, Pattern, Permission, Route, Rule, User } from './types';

export interface Directory {
  users: User[];
  groups: Group[];
  permissions: Permission[];
  outcalls: Route[];
  incalls: Route[];
  acls: Acl[];
  patterns: Pattern[];
  brandPatterns: Pattern[];
}

export async function loadDirectory(): Promise<Directory> {
  const [users, groups, permissions, outcalls, incalls, acls, patterns, brandPatterns] =
    await Promise.all([
      items<User>('/1.1/users'),
      items<Group>('/1.1/groups'),
      items<Permission>('/1.1/callpermissions'),
      items<Route>('/1.1/outcalls'),
      items<Route>('/1.1/incalls'),
      items<Acl>('/1.1/callacls'),
      items<Pattern>('/1.1/aclpatterns'),
      items<Pattern>('/1.1/brand/aclpatterns'),
    ]);
  return { users, groups, permissions, outcalls, incalls, acls, patterns, brandPatterns };
}

interface PatternInForce {
  pattern: Pattern;
  scope: 'tenant' | 'brand';
  /** A tenant pattern that hides the brand's of the same name. */
  overrides: boolean;
}

export function patternsInForce(d: Directory): Map<string, PatternInForce> {
  const map = new Map<string, PatternInForce>();
  for (const p of d.brandPatterns) map.set(p.name, { pattern: p, scope: 'brand', overrides: false });
  for (const p of d.patterns)
    map.set(p.name, { pattern: p, scope: 'tenant', overrides: map.has(p.name) });
  return map;
}

/** What a pattern matches, in a few words. */
export function describePattern(p: Pattern | undefined): string {
  if (!p) return 'no such pattern';
  if (p.regex != null) return `regex ${p.regex}`;
  return `numbers ${(p.numbers ?? []).join(' ')}`;
}

export const byMetric = (rules: Rule[]) => [...rules].sort((a, b) => a.metric - b.metric);

/** A permission that applies to a user, and why. */
export interface Applied {
  permission: Permission;
  tier: 'user' | 'group' | 'outcall';
  /** The group or outcall it comes through. */
  via?: string;
}

export interface Rights {
  acl: Acl | undefined;
  /** The user's own and their groups' permissions, in tier order. */
  permissions: Applied[];
  /** Permissions of outcalls: they apply to the user's calls those outcalls route. */
  outcallTier: Applied[];
  pin: boolean;
}

export function rightsOf(d: Directory, u: User): Rights {
  const perms = new Map(d.permissions.map((p) => [p.name, p]));
  const applied: Applied[] = [];
  for (const name of u.call_permissions) {
    const p = perms.get(name);
    if (p) applied.push({ permission: p, tier: 'user' });
  }
  for (const g of d.groups.filter((g) => u.groups.includes(g.name))) {
    for (const name of g.call_permissions) {
      const p = perms.get(name);
      if (p) applied.push({ permission: p, tier: 'group', via: g.name });
    }
  }
  return {
    acl: d.acls.find((a) => a.name === u.call_acl),
    permissions: applied,
    outcallTier: outcallTier(d),
    pin: u.call_permission_password_set,
  };
}

export function outcallTier(d: Directory): Applied[] {
  const perms = new Map(d.permissions.map((p) => [p.name, p]));
  return d.outcalls.flatMap((o) =>
    o.call_permissions.flatMap((name) => {
      const p = perms.get(name);
      return p ? [{ permission: p, tier: 'outcall' as const, via: o.name }] : [];
    }),
  );
}
