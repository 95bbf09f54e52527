import { describe, expect, it } from 'vitest';
import { programFile, programWarnings } from './package.js';

describe('programs and the files they run', () => {
  it('finds the file a command line runs, relative to the package', () => {
    expect(programFile('setup.exe /q')).toBe('setup.exe');
    expect(programFile('  ./install.sh --quiet')).toBe('install.sh');
    expect(programFile('"bin\\My Setup.exe" /S')).toBe('bin/My Setup.exe');
    expect(programFile('.\\tools\\run.cmd')).toBe('tools/run.cmd');
    // Absolute paths and variables name the client machine's programs.
    for (const c of ['/usr/bin/env bash x.sh', 'C:\\Windows\\system32\\msiexec.exe /i x.msi', '%COMSPEC% /c x', '$SHELL x', ''])
      expect(programFile(c), c).toBeUndefined();
  });

  it('warns, one line per program, when the file is not in the package (any case)', () => {
    const paths = ['setup.exe', 'bin', 'bin/Install.cmd', 'readme.txt'];
    expect(
      programWarnings(
        [
          { name: 'Install', command: 'setup.exe /q' },
          { name: 'Silent', command: 'bin\\install.CMD -s' },
          { name: 'Typo', command: 'setpu.exe /q' },
          { name: 'Shell', command: 'cmd /c readme.txt' },
          { name: 'Msi', command: 'C:\\Windows\\system32\\msiexec.exe /i x.msi' },
        ],
        paths,
      ),
    ).toEqual([
      'program Typo runs "setpu.exe", which is not in the package (fine if it is a program of the client machine)',
      'program Shell runs "cmd", which is not in the package (fine if it is a program of the client machine)',
    ]);
  });
});
