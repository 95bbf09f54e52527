import type { Generated } from 'kysely';

/** Table types. Timestamps are ISO-8601 text; byte counts fit in a JS number (< 2^53). */
export interface MetaTable {
  key: string;
  value: string;
}

export interface TokenTable {
  id: string;
  hash: string;
  role: string;
  name: string;
  created_at: string;
}

export interface CounterTable {
  name: string;
  value: number;
}

export interface PackageTable {
  id: string;
  name: string;
  priority: string;
  /** Highest version that exists (what "latest" shows). */
  latest_version: number;
  /** Highest version number ever given out: the next version is this + 1, even after deletions. */
  last_version: number;
  created_at: string;
  updated_at: string;
}

export interface PackageVersionTable {
  package_id: string;
  version: number;
  manifest_digest: string;
  files: number;
  bytes: number;
  new_bytes: number;
  created_at: string;
}

export interface ChunkTable {
  digest: string;
  size: number;
  stored_size: number;
  /** Bytes that arrived to make this chunk: its size, or less when it was rebuilt from a delta. */
  literal_bytes: number;
  refs: Generated<number>;
  created_at: string;
}

export interface SiteTable {
  code: string;
  name: string;
  parent: string | null;
  /** self, parent, child (direct) or descendant (further below). */
  relation: string;
  url: string | null;
  key_id: string;
  public_key: string;
  certificate: string | null;
  /** The credential this site presents when it calls that site (parent and children only). */
  outbound_token: string | null;
  reachable: number | null;
  last_contact: string | null;
  created_at: string;
  /** DPs: free and total bytes of the content folder's disk, versions held (JSON), when reported. */
  free_bytes: number | null;
  total_bytes: number | null;
  held: string | null;
  state_at: string | null;
  /** DPs: where clients fetch content, when not `url` (nginx or a CDN in front of it). */
  content_url: string | null;
  /** DPs and sites below: the release they run and this site's upgrade of them (JSON). */
  release: string | null;
  /** SHA-256 of the TLS certificate this neighbour serves HTTPS with, when it is self-signed. */
  tls_pin: string | null;
}

export interface DpGroupTable {
  name: string;
  created_at: string;
}

export interface DpGroupMemberTable {
  group_name: string;
  dp: string;
}

export interface JoinTokenTable {
  id: string;
  hash: string;
  kind: string;
  expires_at: string;
  used_at: string | null;
  used_by: string | null;
  created_at: string;
  max_uses: number;
  use_count: number;
}

export interface ClientTable {
  id: string;
  site: string;
  /** SHA-256 of the agent's credential; null for a client of a site below (it polls there). */
  credential_hash: string | null;
  /** JSON of the Inventory. */
  inventory: string;
  boundary: string | null;
  /** JSON array of the DP names it may use, in order. */
  dps: string;
  enrolled_at: string;
  last_seen: string | null;
  revoked: number;
  updated_at: string;
}

export interface PolicyTable {
  kind: string;
  id: string;
  origin: string;
  revision: number;
  deleted: number;
  /** JSON of the SignedPolicy. */
  signed: string;
  updated_at: string;
}

export interface CollectionMemberTable {
  collection: string;
  client: string;
}

export interface ClientStateTable {
  client: string;
  advertisement: string;
  package_id: string;
  version: number;
  state: string;
  bytes_done: number;
  bytes_total: number;
  exit_code: number | null;
  output: string | null;
  detail: string | null;
  /** When the agent saw it. */
  at: string;
  updated_at: string;
}

/** A rollout's settings and where it stands, kept by the site that made it (JSON in both). */
export interface RolloutTable {
  id: string;
  settings: string;
  control: string;
  created_at: string;
  updated_at: string;
}

/** A package the site reads from a folder itself (settings, ingest and snapshot are JSON). */
export interface PackageSourceTable {
  package_id: string;
  path: string;
  settings: string;
  ingest: string | null;
  snapshot: string | null;
  refreshed_at: string | null;
  updated_at: string;
}

export interface RouteTable {
  child: string;
  rate: number | null;
  concurrency: number;
  schedule: string;
  updated_at: string;
}

export interface TargetTable {
  package_id: string;
  version: number;
  site: string;
  /** The child site the package travels through to reach this target; null: this site. */
  via: string | null;
  state: string;
  bytes_done: number;
  bytes_total: number;
  rate: number;
  retries: number;
  next_retry_at: string | null;
  last_error: string | null;
  detail: string | null;
  /** What the target waits for before it moves on (TARGET_AWAITS), or null. */
  awaiting: string | null;
  updated_at: string;
}

export interface TransferTable {
  id: string;
  package_id: string;
  version: number;
  child: string;
  priority: string;
  /** JSON array of the target site codes at or below the child. */
  targets: string;
  state: string;
  bytes_total: number;
  bytes_done: number;
  wire_bytes: number;
  retries: number;
  next_attempt_at: string | null;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

export interface MessageTable {
  id: string;
  time: string;
  site: string;
  component: string;
  severity: string;
  code: string;
  text: string;
  package_id: string | null;
  forwarded: number;
}

export interface KeyTable {
  key_id: string;
  site: string;
  public_key: string;
  certificate: string | null;
}

/** The processes serving this site (several on PostgreSQL): each heartbeats while it runs. */
export interface SiteProcessTable {
  id: string;
  host: string;
  pid: number;
  url: string;
  release: string;
  started_at: string;
  seen_at: string;
  /** Set when it stopped cleanly; a process that died keeps null and an old seen_at. */
  stopped_at: string | null;
}

/** Work that must happen once per site, claimed by one process until expires_at (renewed while held). */
export interface LeaseTable {
  name: string;
  holder: string;
  expires_at: string;
}

/** A client's download slot for one advertisement (times in ms since the epoch). */
export interface DownloadSlotTable {
  slot: string;
  client: string;
  advertisement: string;
  dp: string;
  since: number;
  renewed: number;
}

export interface Database {
  meta: MetaTable;
  tokens: TokenTable;
  counters: CounterTable;
  packages: PackageTable;
  package_versions: PackageVersionTable;
  chunks: ChunkTable;
  sites: SiteTable;
  join_tokens: JoinTokenTable;
  routes: RouteTable;
  targets: TargetTable;
  transfers: TransferTable;
  messages: MessageTable;
  keys: KeyTable;
  dp_groups: DpGroupTable;
  dp_group_members: DpGroupMemberTable;
  clients: ClientTable;
  policy: PolicyTable;
  collection_members: CollectionMemberTable;
  client_states: ClientStateTable;
  rollouts: RolloutTable;
  package_sources: PackageSourceTable;
  site_processes: SiteProcessTable;
  leases: LeaseTable;
  download_slots: DownloadSlotTable;
}
