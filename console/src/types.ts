// The admin API's objects as the console reads them (docs/admin-api.md, "Resources").

export type Mode = 'allow' | 'deny';

export interface Tenant {
  id: string;
  name: string;
  domains: string[];
  country: string;
}

export interface User {
  id: string;
  name: string;
  extension: string;
  call_acl: string | null;
  call_permission_password_set: boolean;
  country: string | null;
  uuid: string | null;
  auth_username: string | null;
  auth_password_set: boolean;
  auth_ha1_set: boolean;
  groups: string[];
  call_permissions: string[];
}

export interface Group {
  id: string;
  name: string;
  number: string | null;
  members: string[];
  call_permissions: string[];
}

export interface Permission {
  id: string;
  name: string;
  mode: Mode;
  extensions: string[];
  password_set: boolean;
  enabled: boolean;
  description: string;
  users: string[];
  groups: string[];
  outcalls: string[];
  incalls: string[];
}

/** An outcall or an incall: read-only here, named by permissions. */
export interface Route {
  id: string;
  name: string;
  call_permissions: string[];
  patterns?: string[];
  next_hop?: string | null;
  did?: string;
  destination?: string;
}

export interface Rule {
  metric: number;
  pattern: string;
  action: Mode;
}

export interface Acl {
  id: string;
  name: string;
  default: Mode;
  rules: Rule[];
}

export interface Pattern {
  id: string;
  name: string;
  regex: string | null;
  numbers: string[] | null;
}

/** What `GET /1.1/check` answers: `check --json`'s keys and the explanation's lines. */
interface Outcome {
  decision: 'allow' | 'deny' | 'challenge';
  call: string;
  tenant: string;
  identity: string | null;
  forwarded: boolean;
  dialed: string;
  e164: string | null;
  next_hop: string | null;
  outcall: string | null;
  incall: string | null;
  stage: string;
  rule: string | null;
  pin: 'accepted' | 'rejected' | null;
  reason: string;
}

export interface CheckResult extends Outcome {
  explanation: string[];
}

/** One `decision` event of `/1.1/events`. */
export interface Decision extends Outcome {
  /** Who called, as identified: what Test a call takes as the caller. */
  caller: string;
  call_id: string;
  time: string;
  source: string;
}
