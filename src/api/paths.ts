/**
 * Every path of the site's and the DP's API, in OpenAPI form: `{name}` parameters, filled with
 * `fillPath`. The handlers declare their routes with these, the endpoints of src/api name them,
 * and the CLI calls them. This module loads nothing, so a command that imports it starts
 * without zod.
 */
export const PATHS = {
  openapi: '/api/v1/openapi.json',
  site: '/api/v1/site',
  sites: '/api/v1/sites',
  siteJoin: '/api/v1/sites/join',
  siteRegister: '/api/v1/sites/register',
  joinTokens: '/api/v1/join-tokens',
  tokens: '/api/v1/tokens',
  token: '/api/v1/tokens/{id}',
  chunks: '/api/v1/chunks',
  chunk: '/api/v1/chunks/{digest}',
  chunksMissing: '/api/v1/chunks/missing',
  chunkSignatures: '/api/v1/chunks/signatures',
  gc: '/api/v1/gc',
  packages: '/api/v1/packages',
  package: '/api/v1/packages/{id}',
  packageVerify: '/api/v1/packages/{id}/verify',
  packageVersions: '/api/v1/packages/{id}/versions',
  manifest: '/api/v1/packages/{id}/versions/{version}/manifest',
  routes: '/api/v1/routes',
  route: '/api/v1/routes/{child}',
  sender: '/api/v1/sender',
  queue: '/api/v1/queue',
  distributions: '/api/v1/distributions',
  distribution: '/api/v1/distributions/{id}',
  undistributions: '/api/v1/undistributions',
  validations: '/api/v1/validations',
  transfers: '/api/v1/transfers',
  transferRetryNow: '/api/v1/transfers/{id}/retry-now',
  transferCancel: '/api/v1/transfers/{id}/cancel',
  messages: '/api/v1/messages',
  dps: '/api/v1/dps',
  dpJoin: '/api/v1/dps/join',
  dpGroups: '/api/v1/dp-groups',
  dpGroup: '/api/v1/dp-groups/{name}',
  dpGroupAdd: '/api/v1/dp-groups/{name}/add',
  dpGroupRemove: '/api/v1/dp-groups/{name}/remove',
  offer: '/api/v1/transfers/offer',
  transferChunks: '/api/v1/transfers/chunks',
  commit: '/api/v1/transfers/commit',
  preview: '/api/v1/transfers/preview',
  remove: '/api/v1/transfers/remove',
  validate: '/api/v1/transfers/validate',
  status: '/api/v1/status',
  courierExport: '/api/v1/courier/export',
  courierImport: '/api/v1/courier/import',
  courierParcels: '/api/v1/courier/parcels',
  courierArrived: '/api/v1/courier/arrived',
  courierWaiting: '/api/v1/courier/waiting',
  courierMissing: '/api/v1/courier/missing',
  dpTickets: '/api/v1/courier/dp-tickets',
  agentJoinTokens: '/api/v1/agent-join-tokens',
  clientSettings: '/api/v1/client-settings',
  agentEnrol: '/api/v1/agent/enrol',
  agentCheckin: '/api/v1/agent/checkin',
  clients: '/api/v1/clients',
  client: '/api/v1/clients/{id}',
  clientRevoke: '/api/v1/clients/{id}/revoke',
  boundaries: '/api/v1/boundaries',
  boundaryDelete: '/api/v1/boundaries/delete',
  collections: '/api/v1/collections',
  collection: '/api/v1/collections/{name}',
  advertisements: '/api/v1/advertisements',
  advertisement: '/api/v1/advertisements/{id}',
  advertisementEnable: '/api/v1/advertisements/{id}/enable',
  advertisementDisable: '/api/v1/advertisements/{id}/disable',
  advertisementStatus: '/api/v1/advertisements/{id}/status',
  why: '/api/v1/why/{client}/{advertisement}',
} as const;

/** Fills `{name}` parameters of a path; each value is URL-encoded. */
export function fillPath(path: string, params: Record<string, string | number> = {}): string {
  return path.replace(/\{(\w+)\}/g, (_, k: string) => {
    const v = params[k];
    if (v === undefined) throw new Error(`path ${path} needs parameter ${k}`);
    return encodeURIComponent(String(v));
  });
}
