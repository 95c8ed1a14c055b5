/** README.md and docs/ link to files and headings that exist (tools/check-links.ts). */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { anchorsOf, brokenLinks } from '../../tools/check-links';

describe('documentation links', () => {
  it('every relative link and anchor in README.md and docs/ resolves', () => {
    const r = brokenLinks();
    expect(r.files).toBeGreaterThan(5);
    expect(r.checked).toBeGreaterThan(50);
    expect(r.broken.map((b) => `${b.file}:${b.line}: ${b.target}: ${b.problem}`)).toEqual([]);
  });

  it('slugs headings as GitHub does, duplicates numbered', () => {
    const a = anchorsOf(
      '# Quick start\n## Encryption and the `codec` endpoint\n## Quick start\n```\n# not a heading\n```\n## What: a run escalated, now?\n',
    );
    expect([...a]).toEqual([
      'quick-start',
      'encryption-and-the-codec-endpoint',
      'quick-start-1',
      'what-a-run-escalated-now',
    ]);
  });

  it('reports a missing file and a missing anchor, and skips code', () => {
    const root = mkdtempSync(path.join(os.tmpdir(), 'ks-links-'));
    try {
      mkdirSync(path.join(root, 'docs'));
      writeFileSync(
        path.join(root, 'README.md'),
        '# Top\n[ok](docs/a.md#there) [gone](docs/b.md) [bad](docs/a.md#nowhere)\n`[code](x.md)`\n',
      );
      writeFileSync(path.join(root, 'docs', 'a.md'), '## There\n[up](../README.md#top)\n');
      const r = brokenLinks(root);
      expect(r.checked).toBe(4);
      expect(r.broken.map((b) => `${b.file}:${b.line}: ${b.target}`)).toEqual([
        'README.md:2: docs/b.md',
        'README.md:2: docs/a.md#nowhere',
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
