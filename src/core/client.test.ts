import { describe, expect, it } from 'vitest';
import { agentUpgradeCommand, compareAgentVersions, parseAgentVersion, upgradeCommandVersion } from './client.js';

describe('agent versions', () => {
  it('orders by the three numbers, then a pre-release before its release', () => {
    const sorted = ['0.10.0', '0.2.0', '1.0.0', '1.0.0-rc.2', '1.0.0-rc.10', '0.2.1', '0.9.9'].sort(compareAgentVersions);
    expect(sorted).toEqual(['0.2.0', '0.2.1', '0.9.9', '0.10.0', '1.0.0-rc.2', '1.0.0-rc.10', '1.0.0']);
    expect(compareAgentVersions('0.1.0', '0.1.0')).toBe(0);
  });

  it('accepts versions that are safe folder names, and nothing else', () => {
    expect(parseAgentVersion('1.4.0-rc.1')).toBe('1.4.0-rc.1');
    for (const bad of ['1.0', '../1.0.0', '1.0.0/x', 'v1.0.0', '1.0.0 ', ''])
      expect(() => parseAgentVersion(bad)).toThrow(/is not an agent version/);
  });

  it('names the version in the upgrade command, and reads it back', () => {
    expect(upgradeCommandVersion(agentUpgradeCommand('0.2.0'))).toBe('0.2.0');
    expect(upgradeCommandVersion('./setup.sh')).toBeNull();
  });
});
