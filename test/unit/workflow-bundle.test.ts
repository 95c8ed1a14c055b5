/**
 * The prebuilt workflow bundle (worker/workflow-bundle.ts) is run only while it matches what it was
 * made from: every file webpack read (also the ones a workflow imports) and the data converter's
 * files. Built for real (bundleWorkflowCode) from a small workflow in a temporary project that
 * borrows this project's node_modules (test/compose.test.ts builds the real one, whose inputs also
 * list the SDK's workflow runtime).
 */
import {
  appendFileSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAILURE_CONVERTER_PATH } from '../../lib/codec';
import { PROJECT_ROOT } from '../../lib/paths';
import {
  buildWorkflowBundle,
  prebuiltWorkflowBundle,
  WORKFLOW_BUNDLE_MANIFEST_NAME,
  WORKFLOW_BUNDLE_NAME,
} from '../../worker/workflow-bundle';

const root = mkdtempSync(path.join(os.tmpdir(), 'ks-wfbundle-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
writeFileSync(path.join(root, 'package.json'), '{ "type": "module" }\n');
symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(root, 'node_modules'));
mkdirSync(path.join(root, 'workflows'));
mkdirSync(path.join(root, 'lib'));
const workflowsPath = path.join(root, 'workflows', 'index.ts');
writeFileSync(
  workflowsPath,
  "import { greeting } from './greeting';\nexport async function hello(): Promise<string> {\n  return greeting;\n}\n",
);
writeFileSync(path.join(root, 'workflows', 'greeting.ts'), "export const greeting = 'hello';\n");
const converter = path.join(root, 'lib', 'failure-converter.cjs');
copyFileSync(FAILURE_CONVERTER_PATH, converter);
const otherConverter = path.join(root, 'lib', 'other-converter.cjs');
writeFileSync(
  otherConverter,
  "const { DefaultFailureConverter } = require('@temporalio/common');\nexports.failureConverter = new DefaultFailureConverter();\n",
);

const dir = path.join(root, 'dist');
const at = { workflowsPath, converters: { failureConverterPath: converter }, dir, root };

describe('the prebuilt workflow bundle', () => {
  it('is run only while every file it was made from is unchanged, the imported ones included', async () => {
    expect(prebuiltWorkflowBundle(at)).toMatchObject({ ok: false, missing: true });

    expect(await buildWorkflowBundle(at)).toMatchObject({ built: true });
    expect(prebuiltWorkflowBundle(at)).toEqual({ ok: true, codePath: path.join(dir, WORKFLOW_BUNDLE_NAME) });
    expect(await buildWorkflowBundle(at)).toMatchObject({ built: false });

    // A file the workflow imports, not only the entry, makes it stale; a build remakes it.
    writeFileSync(path.join(root, 'workflows', 'greeting.ts'), "export const greeting = 'hello again';\n");
    const stale = prebuiltWorkflowBundle(at);
    expect(stale).toMatchObject({ ok: false, missing: false });
    expect(!stale.ok && stale.reason).toContain('workflows/greeting.ts changed');
    expect(await buildWorkflowBundle(at)).toMatchObject({
      built: true,
      reason: expect.stringContaining('workflows/greeting.ts'),
    });
    expect(prebuiltWorkflowBundle(at).ok).toBe(true);

    const manifest = JSON.parse(readFileSync(path.join(dir, WORKFLOW_BUNDLE_MANIFEST_NAME), 'utf8')) as {
      inputs: Record<string, string>;
    };
    expect(Object.keys(manifest.inputs)).toEqual(
      expect.arrayContaining(['workflows/index.ts', 'workflows/greeting.ts', 'lib/failure-converter.cjs']),
    );
  });

  it('is not run with another failure converter than the one it embeds', async () => {
    await buildWorkflowBundle(at);
    for (const converters of [{ failureConverterPath: otherConverter }, {}]) {
      const r = prebuiltWorkflowBundle({ ...at, converters });
      expect(r).toMatchObject({ ok: false, missing: false });
      expect(!r.ok && r.reason).toContain('failureConverter');
    }
    appendFileSync(converter, '// edited\n');
    expect(prebuiltWorkflowBundle(at).ok).toBe(false);
    copyFileSync(FAILURE_CONVERTER_PATH, converter);
    expect(prebuiltWorkflowBundle(at).ok).toBe(true);
  });

  it('is not run when the bundle file is not the one its manifest describes', async () => {
    await buildWorkflowBundle(at);
    appendFileSync(path.join(dir, WORKFLOW_BUNDLE_NAME), '\n// tampered\n');
    const r = prebuiltWorkflowBundle(at);
    expect(!r.ok && r.reason).toContain('does not match its manifest');
    expect(await buildWorkflowBundle(at)).toMatchObject({ built: true });
    expect(prebuiltWorkflowBundle(at).ok).toBe(true);
  });
});
