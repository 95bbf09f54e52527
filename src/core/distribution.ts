/**
 * Distributions: the state of each (package, DP) pair, of each transfer on a route, and the
 * severities of status messages. Decisions read these states, never a sentence.
 */

/** A target (package version, DP): on its way, there, or being removed. */
export const TARGET_STATES = ['pending', 'sending', 'installed', 'retrying', 'failed', 'removing', 'removed'] as const;
export type TargetState = (typeof TARGET_STATES)[number];

/**
 * What a target waits for before it moves on, as the decisions read it (its `detail` says the
 * same for people): a removal still to be sent one hop down, or a courier parcel. Any change of
 * state clears it.
 */
export const TARGET_AWAITS = ['removal', 'courier'] as const;
export type TargetAwait = (typeof TARGET_AWAITS)[number];

/** A transfer of one package version across one route. */
export const TRANSFER_STATES = ['queued', 'sending', 'retrying', 'done', 'failed'] as const;
export type TransferState = (typeof TRANSFER_STATES)[number];

/** Status messages. */
export const SEVERITIES = ['info', 'warning', 'error'] as const;
export type Severity = (typeof SEVERITIES)[number];
