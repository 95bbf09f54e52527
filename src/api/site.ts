import { z } from 'zod';

export const SiteInfo = z
  .object({
    code: z.string(),
    name: z.string(),
    keyId: z.string(),
    publicKey: z.string().describe('Ed25519 public key, SPKI PEM'),
    version: z.string(),
    central: z.object({ code: z.string(), keyId: z.string(), publicKey: z.string() }).describe('the central site this site pinned'),
    trusted: z
      .array(z.object({ keyId: z.string(), publicKey: z.string(), site: z.string().describe('the site whose packages this key signs') }))
      .describe("every key this site accepts manifests from: its own, the central site's, and keys vouched for by the central site"),
  })
  .meta({ id: 'SiteInfo' });
export type SiteInfo = z.infer<typeof SiteInfo>;
