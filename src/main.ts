/**
 * The `cascade` executable's wiring: the admin CLI plus the commands that run a role
 * (site server, distribution point, demo). The CLI itself never imports the site or the store.
 */
import { registerAgent } from './agent/command.js';
import { main } from './cli/program.js';
import { registerDemo } from './demo/command.js';
import { registerDp } from './dp/command.js';
import { registerSite } from './site/command.js';

await main(process.argv, [registerSite, registerDp, registerAgent, registerDemo]);
