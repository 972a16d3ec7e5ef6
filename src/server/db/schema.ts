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
  /** install | activate | rollback | remove | logs | stage | switch */
  kind: string;
  component: string;
  version: string | null;
  /** Hex SHA-256 of the package, for install. */
  digest: string | null;
  /** Its length in bytes: the agent reads no more than this. */
  size: number | string | null;
  /** switch (blue-green): seconds the old slot keeps running for an instant switch back. */
  keep_seconds?: number | null;
  /** route (blue-green by groups): JSON of where traffic moves — group, group before, targets. */
  route?: string | null;
  /** held | queued | running | succeeded | failed | cancelled */
  state: string;
  message: string | null;
  requested_by: string;
  created_at: string;
  updated_at: string;
}

export interface ReleasesTable {
  id: string;
  name: string;
  version: string;
  notes: string;
  /** JSON [{component, version, digest}] */
  components: string;
  /** JSON [flag key]: switched on when the release is made available */
  flags: string;
  created_by: string;
  created_at: string;
  updated_at: string;
  /** Set when a submitted change first names the release: from then on it never changes. */
  locked_at: string | null;
}

export interface ReleaseEvidenceTable {
  id: string;
  release_id: string;
  name: string;
  kind: string;
  digest: string;
  passed: number;
  summary: string;
  added_by: string;
  added_at: string;
}

export interface ReleaseOutcomesTable {
  id: string;
  release_id: string;
  environment_id: string;
  outcome: string;
  deployment_id: string | null;
  change_id: string | null;
  source: string;
  note: string | null;
  recorded_by: string;
  at: string;
}

export interface ReleaseAvailabilityTable {
  id: string;
  release_id: string;
  environment_id: string;
  flags: string;
  made_by: string;
  at: string;
}

export interface LifecyclesTable {
  id: string;
  name: string;
  release_name: string;
  phases: string;
  created_at: string;
  updated_at: string;
}

export interface ChangeTemplatesTable {
  id: string;
  name: string;
  description: string;
  components: string;
  environments: string;
  strategies: string;
  created_by: string;
  created_at: string;
  retired_at: string | null;
}

export interface ChangesTable {
  id: string;
  number: number;
  type: string;
  state: string;
  title: string;
  description: string;
  risk: string;
  risk_answers: string;
  release_id: string;
  environments: string;
  target_selector: string;
  /** JSON [{start, end, timeZone, startAt, endAt}]: as written, and as instants */
  windows: string;
  window_start: string | null;
  window_end: string | null;
  backout_plan: string;
  links: string;
  template_id: string | null;
  requester_id: string;
  requester_name: string;
  supplier_id: string | null;
  content_digest: string;
  revision: number;
  freeze_override_reason: string | null;
  created_at: string;
  updated_at: string;
}

export interface ChangeApprovalsTable {
  id: string;
  change_id: string;
  approver_id: string;
  approver_name: string;
  approver_role: string;
  decision: string;
  reason: string;
  content_digest: string;
  automatic: number;
  at: string;
}

export interface ChangeHistoryTable {
  id: string;
  change_id: string;
  at: string;
  actor: string;
  action: string;
  from_state: string;
  to_state: string;
  reason: string | null;
}

export interface ChangeConflictsTable {
  change_id: string;
  other_id: string;
  reason: string;
  detected_at: string;
}

export interface FreezesTable {
  id: string;
  environment_id: string;
  name: string;
  reason: string;
  kind: string;
  start_at: string | null;
  end_at: string | null;
  cron: string | null;
  duration_minutes: number | null;
  time_zone: string;
  created_by: string;
  created_at: string;
  removed_at: string | null;
}

export interface FlagsTable {
  id: string;
  environment_id: string;
  key: string;
  description: string;
  enabled: number;
  percentage: number | null;
  rules: string;
  revision: number;
  updated_by: string;
  created_at: string;
  updated_at: string;
}

export interface BookingsTable {
  id: string;
  environment_id: string;
  team: string;
  purpose: string;
  start_at: string;
  end_at: string;
  overlaps: string;
  booked_by: string;
  created_at: string;
  cancelled_at: string | null;
}

export interface SubscriptionsTable {
  id: string;
  url: string;
  release_name: string | null;
  secret_hash: string | null;
  created_by: string;
  created_at: string;
  removed_at: string | null;
}

export interface NotificationsTable {
  id: string;
  subscription_id: string;
  kind: string;
  payload: string;
  state: string;
  attempts: number;
  next_attempt_at: string;
  last_error: string | null;
  created_at: string;
  delivered_at: string | null;
}

export interface DeploymentsTable {
  id: string;
  number: number;
  release_id: string;
  environment_id: string;
  change_id: string | null;
  strategy: string;
  options: string;
  halt_rule: string;
  on_failure: string;
  state: string;
  reason: string | null;
  scheduled_for: string | null;
  /** JSON [{target, reason}]: targets left out of the plan (platform standards not met) */
  excluded: string;
  created_by: string;
  created_by_id: string;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  finished_at: string | null;
  /** The replica driving it, until when, and the fencing number that replica must write with. */
  lease_owner: string | null;
  lease_until: string | null;
  fencing: number;
}

export interface DeploymentWavesTable {
  deployment_id: string;
  wave_index: number;
  name: string;
  gate: string;
  canary: number;
  bake_seconds: number;
  state: string;
  bake_until: string | null;
  approved_by: string | null;
  started_at: string | null;
  finished_at: string | null;
}

export interface DeploymentTargetsTable {
  deployment_id: string;
  target_id: string;
  target_name: string;
  wave_index: number;
  state: string;
  /** Index of the next operation (install each package, then activate each). */
  progress: number;
  step_id: string | null;
  /** JSON {component: version active before} */
  before: string;
  /** JSON [component] activated by this deployment (what a rollback puts back) */
  activated: string;
  message: string | null;
  updated_at: string;
}

export interface PipelinesTable {
  id: string;
  name: string;
  /** Runs start for releases of this name. */
  release_name: string;
  /** JSON [{environment, strategy, options, soakSeconds, template, requireEvidence}] */
  stages: string;
  auto_start: number;
  created_by: string;
  created_by_id: string;
  created_at: string;
  updated_at: string;
}

export interface PipelineRunsTable {
  id: string;
  pipeline_id: string;
  release_id: string;
  /** Index of the stage being worked on. */
  stage: number;
  state: string;
  deployment_id: string | null;
  change_id: string | null;
  soak_until: string | null;
  reason: string | null;
  /** JSON [{at, stage, event, detail}] */
  history: string;
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
  releases: ReleasesTable;
  release_evidence: ReleaseEvidenceTable;
  release_outcomes: ReleaseOutcomesTable;
  release_availability: ReleaseAvailabilityTable;
  lifecycles: LifecyclesTable;
  change_templates: ChangeTemplatesTable;
  changes: ChangesTable;
  change_approvals: ChangeApprovalsTable;
  change_history: ChangeHistoryTable;
  change_conflicts: ChangeConflictsTable;
  freezes: FreezesTable;
  flags: FlagsTable;
  bookings: BookingsTable;
  subscriptions: SubscriptionsTable;
  notifications: NotificationsTable;
  deployments: DeploymentsTable;
  deployment_waves: DeploymentWavesTable;
  deployment_targets: DeploymentTargetsTable;
  pipelines: PipelinesTable;
  pipeline_runs: PipelineRunsTable;
}
