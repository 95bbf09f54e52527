import { ALWAYS_OPEN, type Schedule, scheduleFromGrid } from '../core/schedule.js';
import type { RouteRow } from '../store/store.js';

/**
 * Routes: the links from this site to its child sites and its DPs, as the sender, the
 * distribution plan, the queue and the route handlers read them.
 */

/** Packages in flight from one site across all its routes, unless set (`cascade sender set`). */
export const DEFAULT_SITE_CONCURRENCY = 4;

/** Defaults of a route nobody has set: unlimited, two packages in flight, always open. */
export const DEFAULT_ROUTE_CONCURRENCY = 2;

/** A route's schedule as stored, or always open for a route nobody has set. */
export const routeSchedule = (r: RouteRow | undefined): Schedule =>
  r ? scheduleFromGrid(JSON.parse(r.schedule), 'internal') : ALWAYS_OPEN;
