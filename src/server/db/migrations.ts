/**
 * Migrations live in code, are applied in order at start, and are never edited once released:
 * a change to the schema is a new entry at the end of `MIGRATIONS`.
 */
import { type Kysely, type Migration, type MigrationProvider, Migrator, sql } from 'kysely';
import { GantryError } from '../../core/errors.ts';

// biome-ignore lint/suspicious/noExplicitAny: migrations run against the schema as it was then, not as typed now.
type AnyDb = Kysely<any>;

export const MIGRATIONS: Record<string, Migration> = {
  '0001-foundation': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('users')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('username', 'text', (c) => c.notNull().unique())
        .addColumn('display_name', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('password_hash', 'text')
        .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('api_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
        .addColumn('prefix', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text')
        .addColumn('last_used_at', 'text')
        .addColumn('revoked_at', 'text')
        .execute();
      await db.schema.createIndex('api_tokens_user').on('api_tokens').column('user_id').execute();

      await db.schema
        .createTable('sessions')
        .addColumn('id_hash', 'text', (c) => c.primaryKey())
        .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
        .addColumn('csrf_token', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('login_throttle')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('failures', 'integer', (c) => c.notNull())
        .addColumn('locked_until', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('audit_log')
        .addColumn('seq', 'integer', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('source', 'text')
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('details', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_log_action').on('audit_log').columns(['action', 'seq']).execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').column('at').execute();
    },
  },
  '0002-media-library-hardware-store': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('artifacts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('component', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('filename', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('quarantine_reason', 'text')
        .addColumn('provenance', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('verified_at', 'text')
        .addUniqueConstraint('artifacts_component_version', ['component', 'version'])
        .execute();
      await db.schema.createIndex('artifacts_digest').on('artifacts').column('digest').execute();

      await db.schema
        .createTable('publisher_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text')
        .execute();

      await db.schema
        .createTable('artifact_signatures')
        .addColumn('artifact_id', 'text', (c) => c.notNull().references('artifacts.id').onDelete('cascade'))
        .addColumn('key_id', 'text', (c) => c.notNull().references('publisher_keys.id'))
        .addColumn('signature', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('artifact_signatures_pk', ['artifact_id', 'key_id'])
        .execute();

      await db.schema
        .createTable('events')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('details', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('events_at').on('events').column('at').execute();

      await db.schema
        .createTable('hardware_items')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('asset_tag', 'text', (c) => c.notNull().unique())
        .addColumn('model', 'text', (c) => c.notNull())
        .addColumn('vendor', 'text', (c) => c.notNull())
        .addColumn('serial', 'text', (c) => c.notNull())
        .addColumn('firmware_version', 'text')
        .addColumn('location', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('hardware_moves')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('item_id', 'text', (c) => c.notNull().references('hardware_items.id'))
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('from_state', 'text', (c) => c.notNull())
        .addColumn('to_state', 'text', (c) => c.notNull())
        .addColumn('from_location', 'text', (c) => c.notNull())
        .addColumn('to_location', 'text', (c) => c.notNull())
        .addColumn('target', 'text')
        .addColumn('change_id', 'text')
        .addColumn('note', 'text')
        .execute();
      await db.schema
        .createIndex('hardware_moves_item')
        .on('hardware_moves')
        .columns(['item_id', 'at'])
        .execute();
    },
  },
  '0003-inventory-agents': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('suppliers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.alterTable('users').addColumn('supplier_id', 'text').execute();

      await db.schema
        .createTable('environments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('position', 'integer', (c) => c.notNull())
        .addColumn('policy', 'text', (c) => c.notNull())
        .addColumn('standards', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('targets')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('supplier_id', 'text')
        .addColumn('facts', 'text', (c) => c.notNull())
        .addColumn('last_seen_at', 'text')
        .addColumn('retired_at', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('agents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('target_id', 'text', (c) => c.notNull().references('targets.id'))
        .addColumn('credential_hash', 'text', (c) => c.notNull().unique())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('revoked_at', 'text')
        .execute();

      await db.schema
        .createTable('enrollment_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('secret_hash', 'text', (c) => c.notNull().unique())
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('labels', 'text', (c) => c.notNull())
        .addColumn('supplier_id', 'text')
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0004-ledger': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('ledger_entries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('target_id', 'text', (c) => c.notNull().references('targets.id'))
        .addColumn('component', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('digest', 'text')
        .addColumn('previous_version', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('reference', 'text')
        .addColumn('note', 'text')
        .addColumn('recorded_by', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('ledger_target_component')
        .on('ledger_entries')
        .columns(['target_id', 'component', 'id'])
        .execute();
      await db.schema
        .createTable('drift')
        .addColumn('target_id', 'text', (c) => c.notNull().references('targets.id'))
        .addColumn('component', 'text', (c) => c.notNull())
        .addColumn('expected_version', 'text')
        .addColumn('reported_version', 'text', (c) => c.notNull())
        .addColumn('since', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('drift_pk', ['target_id', 'component'])
        .execute();
    },
  },
  '0005-steps': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('steps')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('target_id', 'text', (c) => c.notNull().references('targets.id'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('component', 'text', (c) => c.notNull())
        .addColumn('version', 'text')
        .addColumn('digest', 'text')
        .addColumn('size', 'bigint')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('message', 'text')
        .addColumn('requested_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('steps_target_state')
        .on('steps')
        .columns(['target_id', 'state', 'id'])
        .execute();
    },
  },
  '0006-change-enablement': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('releases')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('version', 'text', (c) => c.notNull())
        .addColumn('notes', 'text', (c) => c.notNull())
        .addColumn('components', 'text', (c) => c.notNull())
        .addColumn('flags', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('locked_at', 'text')
        .addUniqueConstraint('releases_name_version', ['name', 'version'])
        .execute();
      await db.schema
        .createTable('release_evidence')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('passed', 'integer', (c) => c.notNull())
        .addColumn('summary', 'text', (c) => c.notNull())
        .addColumn('added_by', 'text', (c) => c.notNull())
        .addColumn('added_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('release_evidence_release')
        .on('release_evidence')
        .column('release_id')
        .execute();
      await db.schema
        .createTable('release_outcomes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('deployment_id', 'text')
        .addColumn('change_id', 'text')
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('note', 'text')
        .addColumn('recorded_by', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createIndex('release_outcomes_release')
        .on('release_outcomes')
        .column('release_id')
        .execute();
      await db.schema
        .createTable('release_availability')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('flags', 'text', (c) => c.notNull())
        .addColumn('made_by', 'text', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        .addUniqueConstraint('release_availability_once', ['release_id', 'environment_id'])
        .execute();
      await db.schema
        .createTable('lifecycles')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('release_name', 'text', (c) => c.notNull().unique())
        .addColumn('phases', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('change_templates')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('components', 'text', (c) => c.notNull())
        .addColumn('environments', 'text', (c) => c.notNull())
        .addColumn('strategies', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('retired_at', 'text')
        .execute();
      await db.schema
        .createTable('changes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('number', 'integer', (c) => c.notNull().unique())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('title', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('risk', 'text', (c) => c.notNull())
        .addColumn('risk_answers', 'text', (c) => c.notNull())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('environments', 'text', (c) => c.notNull())
        .addColumn('target_selector', 'text', (c) => c.notNull())
        .addColumn('windows', 'text', (c) => c.notNull())
        .addColumn('window_start', 'text')
        .addColumn('window_end', 'text')
        .addColumn('backout_plan', 'text', (c) => c.notNull())
        .addColumn('links', 'text', (c) => c.notNull())
        .addColumn('template_id', 'text')
        .addColumn('requester_id', 'text', (c) => c.notNull())
        .addColumn('requester_name', 'text', (c) => c.notNull())
        .addColumn('supplier_id', 'text')
        .addColumn('content_digest', 'text', (c) => c.notNull())
        .addColumn('revision', 'integer', (c) => c.notNull())
        .addColumn('freeze_override_reason', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('changes_state').on('changes').columns(['state', 'window_start']).execute();
      await db.schema
        .createTable('change_approvals')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('change_id', 'text', (c) => c.notNull().references('changes.id'))
        .addColumn('approver_id', 'text', (c) => c.notNull())
        .addColumn('approver_name', 'text', (c) => c.notNull())
        .addColumn('approver_role', 'text', (c) => c.notNull())
        .addColumn('decision', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('content_digest', 'text', (c) => c.notNull())
        .addColumn('automatic', 'integer', (c) => c.notNull())
        .addColumn('at', 'text', (c) => c.notNull())
        // One person counts once for one content: a racing second approval fails here too.
        .addUniqueConstraint('change_approvals_once', ['change_id', 'approver_id', 'content_digest'])
        .execute();
      await db.schema
        .createTable('change_history')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('change_id', 'text', (c) => c.notNull().references('changes.id'))
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('actor', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('from_state', 'text', (c) => c.notNull())
        .addColumn('to_state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .execute();
      await db.schema.createIndex('change_history_change').on('change_history').column('change_id').execute();
      await db.schema
        .createTable('change_conflicts')
        .addColumn('change_id', 'text', (c) => c.notNull().references('changes.id'))
        .addColumn('other_id', 'text', (c) => c.notNull().references('changes.id'))
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('detected_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('change_conflicts_pk', ['change_id', 'other_id'])
        .execute();
      await db.schema
        .createTable('freezes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('reason', 'text', (c) => c.notNull())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('start_at', 'text')
        .addColumn('end_at', 'text')
        .addColumn('cron', 'text')
        .addColumn('duration_minutes', 'integer')
        .addColumn('time_zone', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('removed_at', 'text')
        .execute();
      await db.schema
        .createTable('flags')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('description', 'text', (c) => c.notNull())
        .addColumn('enabled', 'integer', (c) => c.notNull())
        .addColumn('percentage', 'integer')
        .addColumn('rules', 'text', (c) => c.notNull())
        .addColumn('revision', 'integer', (c) => c.notNull())
        .addColumn('updated_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('flags_environment_key', ['environment_id', 'key'])
        .execute();
      await db.schema
        .createTable('bookings')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('team', 'text', (c) => c.notNull())
        .addColumn('purpose', 'text', (c) => c.notNull())
        .addColumn('start_at', 'text', (c) => c.notNull())
        .addColumn('end_at', 'text', (c) => c.notNull())
        .addColumn('overlaps', 'text', (c) => c.notNull())
        .addColumn('booked_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('cancelled_at', 'text')
        .execute();
      await db.schema
        .createTable('subscriptions')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('release_name', 'text')
        .addColumn('secret_hash', 'text')
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('removed_at', 'text')
        .execute();
      await db.schema
        .createTable('notifications')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('subscription_id', 'text', (c) => c.notNull().references('subscriptions.id'))
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('payload', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull())
        .addColumn('next_attempt_at', 'text', (c) => c.notNull())
        .addColumn('last_error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('delivered_at', 'text')
        .execute();
      await db.schema
        .createIndex('notifications_due')
        .on('notifications')
        .columns(['state', 'next_attempt_at'])
        .execute();
    },
  },
  '0007-deployments': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('deployments')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('number', 'integer', (c) => c.notNull().unique())
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
        .addColumn('change_id', 'text')
        .addColumn('strategy', 'text', (c) => c.notNull())
        .addColumn('options', 'text', (c) => c.notNull())
        .addColumn('halt_rule', 'text', (c) => c.notNull())
        .addColumn('on_failure', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('scheduled_for', 'text')
        .addColumn('excluded', 'text', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_by_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addColumn('lease_owner', 'text')
        .addColumn('lease_until', 'text')
        .addColumn('fencing', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('deployments_state').on('deployments').column('state').execute();
      await db.schema
        .createTable('deployment_waves')
        .addColumn('deployment_id', 'text', (c) => c.notNull().references('deployments.id'))
        .addColumn('wave_index', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('gate', 'text', (c) => c.notNull())
        .addColumn('canary', 'integer', (c) => c.notNull())
        .addColumn('bake_seconds', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('bake_until', 'text')
        .addColumn('approved_by', 'text')
        .addColumn('started_at', 'text')
        .addColumn('finished_at', 'text')
        .addPrimaryKeyConstraint('deployment_waves_pk', ['deployment_id', 'wave_index'])
        .execute();
      await db.schema
        .createTable('deployment_targets')
        .addColumn('deployment_id', 'text', (c) => c.notNull().references('deployments.id'))
        .addColumn('target_id', 'text', (c) => c.notNull().references('targets.id'))
        .addColumn('target_name', 'text', (c) => c.notNull())
        .addColumn('wave_index', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('progress', 'integer', (c) => c.notNull())
        .addColumn('step_id', 'text')
        .addColumn('before', 'text', (c) => c.notNull())
        .addColumn('activated', 'text', (c) => c.notNull())
        .addColumn('message', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('deployment_targets_pk', ['deployment_id', 'target_id'])
        .execute();
      await db.schema
        .createIndex('deployment_targets_step')
        .on('deployment_targets')
        .column('step_id')
        .execute();
      await db.schema
        .createIndex('deployment_targets_target')
        .on('deployment_targets')
        .column('target_id')
        .execute();
    },
  },
  '0008-pipelines': {
    async up(db: AnyDb) {
      await db.schema
        .createTable('pipelines')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().unique())
        .addColumn('release_name', 'text', (c) => c.notNull())
        .addColumn('stages', 'text', (c) => c.notNull())
        .addColumn('auto_start', 'integer', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('created_by_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('pipeline_runs')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('pipeline_id', 'text', (c) => c.notNull().references('pipelines.id'))
        .addColumn('release_id', 'text', (c) => c.notNull().references('releases.id'))
        .addColumn('stage', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('deployment_id', 'text')
        .addColumn('change_id', 'text')
        .addColumn('soak_until', 'text')
        .addColumn('reason', 'text')
        .addColumn('history', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addUniqueConstraint('pipeline_runs_once', ['pipeline_id', 'release_id'])
        .execute();
      await db.schema.createIndex('pipeline_runs_state').on('pipeline_runs').column('state').execute();
    },
  },
  '0009-step-keep': {
    async up(db: AnyDb) {
      // Blue-green: how long a switch keeps the old slot running for an instant switch back.
      await db.schema.alterTable('steps').addColumn('keep_seconds', 'integer').execute();
    },
  },
  '0010-deployment-target-states': {
    async up(db: AnyDb) {
      // Every engine pass looks for a deployment's targets in flight, and counts them by wave and
      // state: with thousands of targets, without this it reads them all each time.
      await db.schema
        .createIndex('deployment_targets_state')
        .on('deployment_targets')
        .columns(['deployment_id', 'state', 'wave_index'])
        .execute();
    },
  },
  '0011-step-route': {
    async up(db: AnyDb) {
      // Blue-green by two target groups: where a router's switch moves traffic.
      await db.schema.alterTable('steps').addColumn('route', 'text').execute();
    },
  },
};

class InCodeMigrationProvider implements MigrationProvider {
  constructor(private readonly migrations: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.migrations;
  }
}

const MIGRATION_TABLE = 'gantry_migration';
const MIGRATION_LOCK_TABLE = 'gantry_migration_lock';

/**
 * Applies every migration this program knows and the database lacks. Refuses, before touching
 * anything, a database that has migrations this program does not know: it was written by a newer
 * Gantry and an older one must not guess at its shape. On PostgreSQL the migrator reads the
 * catalog of every schema; DDL in another schema at the same moment (another Gantry, a test
 * dropping its schema) can fail that read with a missing schema, table or column. Such a failure
 * is tried again, a few times.
 */
export async function migrateToLatest(
  db: AnyDb,
  dialect: 'sqlite' | 'postgres',
  migrations: Record<string, Migration> = MIGRATIONS,
): Promise<string[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await migrateOnce(db, dialect, migrations);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (dialect !== 'postgres' || attempt >= 5 || !CATALOG_RACES.includes(code ?? '')) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
    }
  }
}

/** invalid_schema_name, undefined_table, undefined_column, internal_error (a relation gone mid-read). */
const CATALOG_RACES = ['3F000', '42P01', '42703', 'XX000'];

async function migrateOnce(
  db: AnyDb,
  dialect: 'sqlite' | 'postgres',
  migrations: Record<string, Migration>,
): Promise<string[]> {
  if (await tableExists(db, dialect, MIGRATION_TABLE)) {
    const applied = await db.selectFrom(MIGRATION_TABLE).select('name').execute();
    const unknown = applied
      .map((r: { name: string }) => r.name)
      .filter((name: string) => !(name in migrations));
    if (unknown.length > 0) {
      throw new GantryError(
        'DB_NEWER_THAN_PROGRAM',
        `The database was last migrated by a newer Gantry (it has migration ${unknown.join(', ')}, which this version does not know). Run the newer Gantry, or point this one at another database.`,
        { unknownMigrations: unknown },
      );
    }
  }
  // On PostgreSQL the migration tables are named in the schema Gantry works in: without it,
  // the migrator would take another schema's tables (another Gantry, or a test) for its own.
  const schema =
    dialect === 'postgres'
      ? (await sql<{ schema: string }>`select current_schema() as schema`.execute(db)).rows[0]?.schema
      : undefined;
  const migrator = new Migrator({
    db,
    provider: new InCodeMigrationProvider(migrations),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE,
    ...(schema ? { migrationTableSchema: schema } : {}),
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error) throw error;
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

async function tableExists(db: AnyDb, dialect: 'sqlite' | 'postgres', name: string): Promise<boolean> {
  if (dialect === 'postgres') {
    // Resolved through the search path, so a schema of its own (as tests use) is respected.
    const { rows } = await sql<{ found: string | null }>`select to_regclass(${name})::text as found`.execute(
      db,
    );
    return rows[0]?.found != null;
  }
  const { rows } = await sql<{
    name: string;
  }>`select name from sqlite_master where type = 'table' and name = ${name}`.execute(db);
  return rows.length > 0;
}

export async function ping(db: AnyDb): Promise<void> {
  await sql`select 1`.execute(db);
}
