import type { Command } from 'commander';

/**
 * One or two examples for each command's --help, by its path ("site init", "distribute").
 * Shown after the options; the commands' own texts stay about what they do.
 */
export const EXAMPLES: Record<string, string[]> = {
  'site init': [
    'cascade site init --data ./cen --code CEN --name "Central"',
    'cascade site init --data ./nyc --code NYC --listen 127.0.0.1:8101 --parent http://127.0.0.1:8100 --join-token $TOKEN',
    'cascade site init --data ./cen --code CEN --source-root /srv/packages',
  ],
  'site start': ['cascade site start --data ./cen', 'cascade site start --data ./cen --db postgres://cascade@db/cascade'],
  'site join-token': ['TOKEN=$(cascade site join-token)', 'cascade site join-token --ttl 600 --json'],
  'site list': ['cascade site list', 'cascade site list --json'],
  'site remove': ['cascade site remove NYC', 'cascade site remove NYC --json'],
  'dp init': ['cascade dp init --data ./dp1 --site http://127.0.0.1:8101 --name nyc-dp1 --listen 127.0.0.1:8201 --join-token $TOKEN'],
  'dp start': ['cascade dp start --data ./dp1'],
  'dp join-token': ['TOKEN=$(cascade dp join-token --data ./nyc)'],
  'dp list': ['cascade dp list', 'cascade dp list --json'],
  'dp remove': ['cascade dp remove nyc-dp2', 'cascade dp remove nyc-dp2 --json'],
  'dp upgrade': ['cascade dp upgrade', 'cascade dp upgrade nyc-dp1 --json'],
  'dp-group create': ['cascade dp-group create branches --dp nyc-dp1 --dp ber-dp1'],
  'dp-group add': ['cascade dp-group add branches --dp lon-dp1'],
  'dp-group remove': ['cascade dp-group remove branches --dp lon-dp1'],
  'dp-group list': ['cascade dp-group list --json'],
  'dp-group show': ['cascade dp-group show branches'],
  'dp-group delete': ['cascade dp-group delete branches'],
  'route set': [
    'cascade route set NYC --rate 2MiB/s',
    'cascade route set NYC --schedule "mon-fri 08-18 high; sat-sun all" --time-zone Europe/Berlin',
  ],
  'route show': ['cascade route show NYC'],
  'route list': ['cascade route list --json'],
  'sender show': ['cascade sender show'],
  'sender set': ['cascade sender set --concurrency 8'],
  queue: ['cascade queue', 'cascade queue --route NYC --json'],
  'transfer retry-now': ['cascade transfer retry-now 5f0c2a9e-…'],
  'transfer cancel': ['cascade transfer cancel 5f0c2a9e-…'],
  distribute: [
    'cascade distribute CEN00001 --to site:NYC --dry-run',
    'cascade distribute CEN00001 --to group:branches --to dp:lon-dp1 --via courier',
  ],
  undistribute: ['cascade undistribute CEN00001 --from dp:nyc-dp1', 'cascade undistribute CEN00001 --version 2 --from site:NYC'],
  messages: ['cascade messages --severity warn', 'cascade messages --site nyc-dp1 --package CEN00001 --json'],
  validate: ['cascade validate CEN00001', 'cascade validate CEN00001 --dp nyc-dp1 --json'],
  repair: ['cascade repair CEN00001 --dp nyc-dp1'],
  'courier export': [
    'cascade courier export CEN00001 --to-site NYC -o nyc.parcel',
    'cascade courier export CEN00001 --to-dp kiosk-dp1 -o kiosk.parcel',
  ],
  'courier import': ['cascade courier import nyc.parcel', 'cascade courier import kiosk.parcel --dp kiosk-dp1'],
  'courier inspect': ['cascade courier inspect nyc.parcel'],
  'package create': [
    'cascade package create ./office --name "Office 2000" --priority high --program "Install=setup.exe /q"',
    'cascade package create --source-on-site /srv/packages/office --name "Office 2000" --program "Install=setup.exe /q"',
  ],
  'package update': [
    'cascade package update CEN00001 ./office-sp1',
    'cascade package update CEN00001',
    'cascade package update CEN00001 --source-on-site /srv/packages/office-sp1 --hold',
  ],
  'package set': ['cascade package set CEN00001 --refresh-every 24h --distribute', 'cascade package set CEN00001 --refresh-every off'],
  'package list': ['cascade package list --json'],
  'package show': ['cascade package show CEN00001', 'cascade package show CEN00001 --version 1 --json'],
  'package fetch': [
    'cascade package fetch CEN00001 ./out',
    'cascade package fetch CEN00001 ./out --version 2 --from http://nyc-dp1:8201 --trust-key central.pem',
  ],
  'package verify': ['cascade package verify CEN00001'],
  gc: ['cascade gc', 'cascade gc --grace 0'],
  status: ['cascade status CEN00001', 'cascade status CEN00001 --watch --until-done', 'cascade status --json'],
  'package delete': ['cascade package delete CEN00001 --version 2', 'cascade package delete CEN00001 --yes'],
  'token create': ['cascade token create --role operator --name ci'],
  'token list': ['cascade token list'],
  'token revoke': ['cascade token revoke 832bcecea255'],
  'site set': [
    'cascade site set --client-cycle 60m',
    'cascade site set --download-slots 20 --dp-download-slots 10 --client-rate 50Mbit/s --slot-timeout 2m',
    'cascade site set --data ./cen --source-root /srv/packages --source-root /mnt/media',
  ],
  'agent join-token': ['TOKEN=$(cascade agent join-token --uses 500 --ttl 7d)'],
  'agent init': ['cascade agent init --data /var/lib/cascade-agent --site http://ber-site:8100 --join-token $TOKEN'],
  'agent start': ['cascade agent start --data /var/lib/cascade-agent'],
  'agent run-now': ['cascade agent run-now --data /var/lib/cascade-agent'],
  'agent install': ['cascade agent install CEN-A00001 --data /var/lib/cascade-agent'],
  'agent status': ['cascade agent status --data /var/lib/cascade-agent --json'],
  'agent versions': ['cascade agent versions', 'cascade agent versions --json'],
  'agent publish': [
    'cascade agent publish',
    'cascade agent publish --file ./cascade-agent.cjs --spread 48h --grace 30m',
    'cascade agent publish --version 0.1.0',
  ],
  'agent simulate': [
    'cascade agent simulate --site http://ber-site:8100 --join-token $TOKEN --clients 1000 --until-done --json',
    'cascade agent simulate --site http://ber-site:8100 --join-token $T1 --site http://muc-site:8100 --join-token $T2 --clients 10000 --fail 2%',
  ],
  'client list': ['cascade client list', 'cascade client list --json'],
  'client show': ['cascade client show BER-000042'],
  'client revoke': ['cascade client revoke BER-000042'],
  'boundary add': ['cascade boundary add BER 10.20.0.0/16 --dp ber-dp1 --dp ber-dp2', 'cascade boundary add BER fd00:20::/32'],
  'boundary list': ['cascade boundary list'],
  'boundary remove': ['cascade boundary remove BER 10.20.0.0/16'],
  'collection create': [
    'cascade collection create "Berlin workstations" --rule \'os = "linux" and hostname like "ber-%"\'',
    'cascade collection create Pilot --client BER-000042 --client BER-000043 --exclude Servers',
  ],
  'collection set': [
    'cascade collection set Pilot --include "Berlin workstations"',
    'cascade collection set Servers --window "sat 22-04" --time-zone Europe/Berlin',
    'cascade collection set Servers --window none',
  ],
  'collection list': ['cascade collection list'],
  'collection show': ['cascade collection show Pilot --json'],
  'collection delete': ['cascade collection delete Pilot'],
  advertise: [
    'cascade advertise CEN00001 --program Install --collection Pilot --mandatory now',
    'cascade advertise CEN00001 --program Install --collection "Berlin workstations" --available +2h --mandatory 2026-12-24T18:00:00Z --slow-link skip --rerun if-failed',
  ],
  'advertisement list': ['cascade advertisement list'],
  'advertisement show': ['cascade advertisement show CEN-A00001'],
  'advertisement enable': ['cascade advertisement enable CEN-A00001'],
  'advertisement disable': ['cascade advertisement disable CEN-A00001'],
  'advertisement delete': ['cascade advertisement delete CEN-A00001'],
  'advertisement status': ['cascade advertisement status CEN-A00001', 'cascade advertisement status CEN-A00001 --json'],
  why: ['cascade why BER-000042 CEN-A00001'],
  'rollout create': [
    'cascade rollout create CEN00001 --program Install --collection Workstations --wave Pilot --wave 10% --wave rest',
    'cascade rollout create CEN00001 --program Install --collection Workstations --wave Pilot --wave 25% --wave rest --success 98% --failure 2% --hold 4h --approval',
  ],
  'rollout list': ['cascade rollout list', 'cascade rollout list --json'],
  'rollout show': ['cascade rollout show CEN-A00002'],
  'rollout status': ['cascade rollout status CEN-A00002', 'cascade rollout status CEN-A00002 --json'],
  'rollout pause': ['cascade rollout pause CEN-A00002'],
  'rollout resume': ['cascade rollout resume CEN-A00002'],
  'rollout approve': ['cascade rollout approve CEN-A00002'],
  'rollout cancel': ['cascade rollout cancel CEN-A00002'],
  demo: ['cascade demo', 'cascade demo --once'],
};

/** The command's path below the program: "site init", "distribute". */
const pathOf = (c: Command): string => {
  const names: string[] = [];
  for (let x: Command | null = c; x?.parent; x = x.parent) names.unshift(x.name());
  return names.join(' ');
};

/** Marks each required option as such and adds the examples, on every command below `program`. */
export function polishHelp(program: Command): void {
  const visit = (c: Command) => {
    for (const o of c.options) if (o.mandatory && !o.description.endsWith('(required)')) o.description = `${o.description} (required)`;
    const ex = EXAMPLES[pathOf(c)];
    if (ex) c.addHelpText('after', `\nExamples:\n${ex.map((e) => `  ${e}`).join('\n')}`);
    c.commands.forEach(visit);
  };
  program.commands.forEach(visit);
}
