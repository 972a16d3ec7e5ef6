/**
 * Table types for Kysely. One schema for SQLite and PostgreSQL: times are ISO 8601 UTC text
 * (sorts correctly in both), booleans are integers 0/1, JSON is text.
 */

export interface UsersTable {
  id: string;
  username: string;
  display_name: string;
  role: string;
  password_hash: string | null;
  disabled: number;
  created_at: string;
  updated_at: string;
}

export interface ApiTokensTable {
  id: string;
  user_id: string;
  name: string;
  secret_hash: string;
  prefix: string;
  created_at: string;
  expires_at: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
}

export interface SessionsTable {
  id_hash: string;
  user_id: string;
  csrf_token: string;
  created_at: string;
  expires_at: string;
}

export interface LoginThrottleTable {
  key: string;
  failures: number;
  locked_until: string | null;
  updated_at: string;
}

export interface AuditLogTable {
  seq: number;
  at: string;
  actor: string;
  source: string | null;
  action: string;
  subject: string;
  details: string;
  prev_hash: string;
  hash: string;
}

export interface Tables {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  sessions: SessionsTable;
  login_throttle: LoginThrottleTable;
  audit_log: AuditLogTable;
}
