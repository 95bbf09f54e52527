export const VERSION = '0.1.0';

/**
 * The bundled agent of this release (`npm run build` writes dist/cascade-agent.cjs beside the
 * compiled code): what `cascade agent publish` publishes by default, and a site server of a
 * newer release publishes by itself (docs/agent.md#upgrades).
 */
export const bundledAgentUrl = (): URL => new URL('../cascade-agent.cjs', import.meta.url);
