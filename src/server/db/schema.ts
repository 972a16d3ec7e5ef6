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
  /** Set for supplier users: they see only what belongs to this supplier. */
  supplier_id: string | null;
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

export interface ArtifactsTable {
  id: string;
  component: string;
  version: string;
  kind: string;
  /** Hex SHA-256 of the bytes. */
  digest: string;
  /** bigint: PostgreSQL returns it as a string. */
  size: number | string;
  filename: string | null;
  state: string;
  quarantine_reason: string | null;
  provenance: string;
  created_at: string;
  created_by: string;
  verified_at: string | null;
}

export interface PublisherKeysTable {
  id: string;
  name: string;
  public_key: string;
  created_at: string;
  created_by: string;
  revoked_at: string | null;
}

export interface ArtifactSignaturesTable {
  artifact_id: string;
  key_id: string;
  signature: string;
  created_at: string;
  created_by: string;
}

export interface EventsTable {
  id: string;
  at: string;
  severity: string;
  kind: string;
  subject: string;
  message: string;
  details: string;
}

export interface HardwareItemsTable {
  id: string;
  asset_tag: string;
  model: string;
  vendor: string;
  serial: string;
  firmware_version: string | null;
  location: string;
  state: string;
  target: string | null;
  created_at: string;
  updated_at: string;
}

export interface HardwareMovesTable {
  id: string;
  item_id: string;
  at: string;
  actor: string;
  from_state: string;
  to_state: string;
  from_location: string;
  to_location: string;
  target: string | null;
  change_id: string | null;
  note: string | null;
}

export interface SuppliersTable {
  id: string;
  name: string;
  created_at: string;
}

export interface EnvironmentsTable {
  id: string;
  name: string;
  position: number;
  policy: string;
  standards: string;
  created_at: string;
  updated_at: string;
}

export interface TargetsTable {
  id: string;
  name: string;
  environment_id: string;
  labels: string;
  supplier_id: string | null;
  facts: string;
  last_seen_at: string | null;
  retired_at: string | null;
  created_at: string;
}

export interface AgentsTable {
  id: string;
  target_id: string;
  credential_hash: string;
  created_at: string;
  revoked_at: string | null;
}

export interface EnrollmentTokensTable {
  id: string;
  secret_hash: string;
  environment_id: string;
  labels: string;
  supplier_id: string | null;
  expires_at: string;
  used_at: string | null;
  created_by: string;
  created_at: string;
}

export interface LedgerEntriesTable {
  id: string;
  target_id: string;
  component: string;
  version: string;
  digest: string | null;
  previous_version: string | null;
  /** 'deployment', 'external' (recorded for work done outside Gantry, e.g. by a supplier) */
  source: string;
  reference: string | null;
  note: string | null;
  recorded_by: string;
  at: string;
}

export interface DriftTable {
  target_id: string;
  component: string;
  expected_version: string | null;
  reported_version: string;
  since: string;
}

export interface StepsTable {
  id: string;
  target_id: string;
  /** install | activate | rollback | remove */
  kind: string;
  component: string;
  version: string | null;
  /** Hex SHA-256 of the package, for install. */
  digest: string | null;
  /** Its length in bytes: the agent reads no more than this. */
  size: number | string | null;
  /** queued | running | succeeded | failed */
  state: string;
  message: string | null;
  requested_by: string;
  created_at: string;
  updated_at: string;
}

export interface Tables {
  users: UsersTable;
  api_tokens: ApiTokensTable;
  sessions: SessionsTable;
  login_throttle: LoginThrottleTable;
  audit_log: AuditLogTable;
  artifacts: ArtifactsTable;
  publisher_keys: PublisherKeysTable;
  artifact_signatures: ArtifactSignaturesTable;
  events: EventsTable;
  hardware_items: HardwareItemsTable;
  hardware_moves: HardwareMovesTable;
  suppliers: SuppliersTable;
  environments: EnvironmentsTable;
  targets: TargetsTable;
  agents: AgentsTable;
  enrollment_tokens: EnrollmentTokensTable;
  ledger_entries: LedgerEntriesTable;
  drift: DriftTable;
  steps: StepsTable;
}
