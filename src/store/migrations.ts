import { type Kysely, type Migration, type MigrationProvider, sql } from 'kysely';

/** Migrations in code, applied in name order; one list for SQLite and PostgreSQL. */
const migrations: Record<string, Migration> = {
  '0001_foundation': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('meta')
        .addColumn('key', 'text', (c) => c.primaryKey())
        .addColumn('value', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('counters')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('value', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('packages')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('priority', 'text', (c) => c.notNull())
        .addColumn('latest_version', 'integer', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('package_versions')
        .addColumn('package_id', 'text', (c) => c.notNull().references('packages.id'))
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('manifest_digest', 'text', (c) => c.notNull())
        .addColumn('files', 'integer', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('new_bytes', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('package_versions_pk', ['package_id', 'version'])
        .execute();
      await db.schema
        .createTable('chunks')
        .addColumn('digest', 'text', (c) => c.primaryKey())
        .addColumn('size', 'integer', (c) => c.notNull())
        .addColumn('stored_size', 'integer', (c) => c.notNull())
        .addColumn('literal_bytes', 'integer', (c) => c.notNull())
        .addColumn('refs', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('chunks_unreferenced').on('chunks').columns(['refs', 'created_at']).execute();
    },
  },
  '0002_version_numbers': {
    // Version numbers only move forward: `last_version` is the highest number ever given out for
    // the package, while `latest_version` is the highest that still exists (it moves back when
    // the newest version is deleted). Existing packages start counting after their latest.
    async up(db: Kysely<unknown>) {
      await db.schema
        .alterTable('packages')
        .addColumn('last_version', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await sql`UPDATE packages SET last_version = latest_version`.execute(db);
    },
  },
  '0003_hierarchy': {
    // The sites this site knows (itself, its parent, every site below it) and join tokens.
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('sites')
        .addColumn('code', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('parent', 'text')
        .addColumn('relation', 'text', (c) => c.notNull())
        .addColumn('url', 'text')
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('certificate', 'text')
        .addColumn('outbound_token', 'text')
        .addColumn('reachable', 'integer')
        .addColumn('last_contact', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('join_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hash', 'text', (c) => c.notNull().unique())
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .addColumn('used_at', 'text')
        .addColumn('used_by', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0004_routes': {
    // A route per child site, set on the parent: rate (bytes/s, null = unlimited),
    // packages in flight, and the week x 24-hour schedule as JSON {timeZone, cells}.
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('routes')
        .addColumn('child', 'text', (c) => c.primaryKey())
        .addColumn('rate', 'bigint')
        .addColumn('concurrency', 'integer', (c) => c.notNull())
        .addColumn('schedule', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0005_distribution': {
    // Targets of distributions at or below this site, the sender's outbound transfers per
    // route, status messages, and keys of other sites (vouched for by the central site).
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('targets')
        .addColumn('package_id', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('via', 'text')
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('bytes_done', 'bigint', (c) => c.notNull())
        .addColumn('bytes_total', 'bigint', (c) => c.notNull())
        .addColumn('rate', 'bigint', (c) => c.notNull())
        .addColumn('retries', 'integer', (c) => c.notNull())
        .addColumn('next_retry_at', 'text')
        .addColumn('last_error', 'text')
        .addColumn('detail', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('targets_pk', ['package_id', 'version', 'site'])
        .execute();
      await db.schema
        .createTable('transfers')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('package_id', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('child', 'text', (c) => c.notNull())
        .addColumn('priority', 'text', (c) => c.notNull())
        .addColumn('targets', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('bytes_total', 'bigint', (c) => c.notNull())
        .addColumn('bytes_done', 'bigint', (c) => c.notNull())
        .addColumn('wire_bytes', 'bigint', (c) => c.notNull())
        .addColumn('retries', 'integer', (c) => c.notNull())
        .addColumn('next_attempt_at', 'text')
        .addColumn('last_error', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('transfers_by_child').on('transfers').columns(['child', 'state']).execute();
      await db.schema
        .createTable('messages')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('time', 'text', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('component', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('code', 'text', (c) => c.notNull())
        .addColumn('text', 'text', (c) => c.notNull())
        .addColumn('package_id', 'text')
        .addColumn('forwarded', 'integer', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('messages_unforwarded').on('messages').columns(['forwarded', 'time']).execute();
      await db.schema
        .createTable('keys')
        .addColumn('key_id', 'text', (c) => c.primaryKey())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('public_key', 'text', (c) => c.notNull())
        .addColumn('certificate', 'text')
        .execute();
    },
  },
  '0006_dps': {
    // Distribution points live beside sites in \`sites\` (relation dp: this site's own; dp-below:
    // a DP of a site below), with the state they last reported; DP groups name sets of them.
    async up(db: Kysely<unknown>) {
      for (const [name, type] of [
        ['free_bytes', 'bigint'],
        ['total_bytes', 'bigint'],
        ['held', 'text'],
        ['state_at', 'text'],
      ] as const) {
        await db.schema.alterTable('sites').addColumn(name, type).execute();
      }
      await db.schema
        .createTable('dp_groups')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema
        .createTable('dp_group_members')
        .addColumn('group_name', 'text', (c) => c.notNull())
        .addColumn('dp', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('dp_group_members_pk', ['group_name', 'dp'])
        .execute();
    },
  },
  // Courier parcels (docs/courier.md); the tables' row types are in ./courier.ts.
  '0007_courier': {
    async up(k: Kysely<unknown>) {
      await k.schema
        .createTable('courier_routes')
        .addColumn('package_id', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('child', 'text', (c) => c.notNull())
        .addColumn('missing', 'text')
        .addColumn('missing_bytes', 'bigint')
        .addColumn('child_versions', 'text')
        .addColumn('checked_at', 'text')
        .addColumn('quiet_checks', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('parcel', 'text')
        .addColumn('exported_at', 'text')
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('courier_routes_pk', ['package_id', 'version', 'child'])
        .execute();
      await k.schema
        .createTable('courier_parcels')
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('direction', 'text', (c) => c.notNull())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('packages', 'text', (c) => c.notNull())
        .addColumn('chunks', 'integer', (c) => c.notNull())
        .addColumn('bytes', 'bigint', (c) => c.notNull())
        .addColumn('result', 'text')
        .addPrimaryKeyConstraint('courier_parcels_pk', ['id', 'direction'])
        .execute();
    },
  },
  // What a target waits for, as a column the sender's removal pass and the offer read, instead
  // of its detail text; the texts it used to be read from are carried over.
  '0008_target_awaiting': {
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('targets').addColumn('awaiting', 'text').execute();
      await db.schema.createIndex('targets_awaiting').on('targets').column('awaiting').execute();
      await sql`UPDATE targets SET awaiting = 'removal' WHERE state = 'removing' AND detail = 'removal queued'`.execute(db);
      await sql`UPDATE targets SET awaiting = 'courier' WHERE state = 'pending' AND (detail LIKE 'waiting for a courier parcel%' OR detail LIKE 'waiting for courier parcel%')`.execute(
        db,
      );
    },
  },
  // Clients and their policy (docs/clients.md): enrolled machines with their inventory, the
  // signed policy records (collections, advertisements, boundaries), collection members as
  // evaluated here, and where each advertisement stands on each client. Join tokens for agents
  // are used many times: max_uses and use_count.
  '0009_clients': {
    async up(db: Kysely<unknown>) {
      // Where clients fetch a DP's content, when not where the site reaches the DP (nginx, a CDN).
      await db.schema.alterTable('sites').addColumn('content_url', 'text').execute();
      await db.schema
        .alterTable('join_tokens')
        .addColumn('max_uses', 'integer', (c) => c.notNull().defaultTo(1))
        .execute();
      await db.schema
        .alterTable('join_tokens')
        .addColumn('use_count', 'integer', (c) => c.notNull().defaultTo(0))
        .execute();
      await db.schema
        .createTable('clients')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('site', 'text', (c) => c.notNull())
        .addColumn('credential_hash', 'text', (c) => c.unique())
        .addColumn('inventory', 'text', (c) => c.notNull())
        .addColumn('boundary', 'text')
        .addColumn('dps', 'text', (c) => c.notNull())
        .addColumn('enrolled_at', 'text', (c) => c.notNull())
        .addColumn('last_seen', 'text')
        .addColumn('revoked', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('clients_updated').on('clients').column('updated_at').execute();
      await db.schema
        .createTable('policy')
        .addColumn('kind', 'text', (c) => c.notNull())
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('origin', 'text', (c) => c.notNull())
        .addColumn('revision', 'integer', (c) => c.notNull())
        .addColumn('deleted', 'integer', (c) => c.notNull())
        .addColumn('signed', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('policy_pk', ['kind', 'id'])
        .execute();
      await db.schema
        .createTable('collection_members')
        .addColumn('collection', 'text', (c) => c.notNull())
        .addColumn('client', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('collection_members_pk', ['collection', 'client'])
        .execute();
      await db.schema.createIndex('collection_members_client').on('collection_members').column('client').execute();
      await db.schema
        .createTable('client_states')
        .addColumn('client', 'text', (c) => c.notNull())
        .addColumn('advertisement', 'text', (c) => c.notNull())
        .addColumn('package_id', 'text', (c) => c.notNull())
        .addColumn('version', 'integer', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('bytes_done', 'bigint', (c) => c.notNull())
        .addColumn('bytes_total', 'bigint', (c) => c.notNull())
        .addColumn('exit_code', 'integer')
        .addColumn('output', 'text')
        .addColumn('detail', 'text')
        .addColumn('at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('client_states_pk', ['client', 'advertisement'])
        .execute();
      await db.schema.createIndex('client_states_updated').on('client_states').column('updated_at').execute();
      await db.schema.createIndex('client_states_ad').on('client_states').column('advertisement').execute();
    },
  },
  // Rollouts (docs/rollouts.md): settings and progress of each rollout this site made.
  '0010_rollouts': {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('rollouts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('settings', 'text', (c) => c.notNull())
        .addColumn('control', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0011_releases': {
    // The Cascade release a DP or a site below reports it runs, and this site's upgrade of it (JSON).
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('sites').addColumn('release', 'text').execute();
    },
  },
  '0012_package_sources': {
    // Packages the site reads from a folder itself: the folder, the refresh schedule, the ingest
    // under way or last run, and the files' sizes and times at the version last made (JSON).
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('package_sources')
        .addColumn('package_id', 'text', (c) => c.primaryKey())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('settings', 'text', (c) => c.notNull())
        .addColumn('ingest', 'text')
        .addColumn('snapshot', 'text')
        .addColumn('refreshed_at', 'text')
        .addColumn('updated_at', 'text', (c) => c.notNull())
        .execute();
    },
  },
  '0013_tls_pins': {
    // The certificate each neighbour serves HTTPS with, pinned at join (a join token carries the
    // parent's; the join body the child's or the DP's).
    async up(db: Kysely<unknown>) {
      await db.schema.alterTable('sites').addColumn('tls_pin', 'text').execute();
    },
  },
  '0014_site_processes': {
    // Several processes of one site (PostgreSQL): who serves, and who holds which once-only work.
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('site_processes')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('host', 'text', (c) => c.notNull())
        .addColumn('pid', 'integer', (c) => c.notNull())
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('release', 'text', (c) => c.notNull())
        .addColumn('started_at', 'text', (c) => c.notNull())
        .addColumn('seen_at', 'text', (c) => c.notNull())
        .addColumn('stopped_at', 'text')
        .execute();
      await db.schema
        .createTable('leases')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('holder', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'text', (c) => c.notNull())
        .execute();
      // Download slots held by clients, shared by the processes of a site on PostgreSQL (src/site/slots.ts).
      await db.schema
        .createTable('download_slots')
        .addColumn('slot', 'text', (c) => c.primaryKey())
        .addColumn('client', 'text', (c) => c.notNull())
        .addColumn('advertisement', 'text', (c) => c.notNull())
        .addColumn('dp', 'text', (c) => c.notNull())
        .addColumn('since', 'bigint', (c) => c.notNull())
        .addColumn('renewed', 'bigint', (c) => c.notNull())
        .execute();
    },
  },
};

export const migrationProvider: MigrationProvider = {
  async getMigrations() {
    return migrations;
  },
};
