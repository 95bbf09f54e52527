/** Seconds before retry number `retries` (1, 2, …): 5 s, doubling, at most 5 minutes. */
export function backoffSeconds(retries: number): number {
  return Math.min(300, 5 * 2 ** Math.max(0, retries - 1));
}
