import { ApiClient } from '../api/client.js';
import { fail } from '../core/errors.js';
import type { SiteRow } from '../store/store.js';

/** JSON calls between neighbours give up after this long with no answer. */
export const PEER_TIMEOUT_MS = 30_000;

/** What a neighbour is called in messages: "site NYC" or "DP nyc-dp1". */
export const peerName = (peer: Pick<SiteRow, 'code' | 'relation'>): string =>
  `${peer.relation === 'dp' || peer.relation === 'dp-below' ? 'DP' : 'site'} ${peer.code}`;

/**
 * The client for calling a neighbour (parent, child site, DP) with the credential this site
 * holds for it; answers are validated against src/api. Chunk batches pass `timeoutMs: 0`: a
 * throttled batch may take minutes, and the sender's signal stops it instead.
 */
export function peerClient(peer: SiteRow, opts: { timeoutMs?: number } = {}): ApiClient {
  if (!peer.url || !peer.outboundToken)
    throw fail('unavailable', `${peerName(peer)} cannot be called from here (no address or credential)`);
  return new ApiClient(peer.url, {
    token: peer.outboundToken,
    who: peerName(peer),
    prefixErrors: true,
    timeoutMs: opts.timeoutMs ?? PEER_TIMEOUT_MS,
    pin: peer.tlsPin,
  });
}
