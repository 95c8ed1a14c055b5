// Lint rules that keep workflows deterministic, promises handled (STYLE.md §3, §4) and every import
// pointing down the rooms (docs/architecture.md).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Each production room and the rooms it may import (besides itself): tools/rooms.json. */
const { rooms: ROOMS, top: TOP } = JSON.parse(
  readFileSync(path.join(import.meta.dirname, 'tools', 'rooms.json'), 'utf8'),
);
const ALL_ROOMS = [...Object.keys(ROOMS), ...TOP];

/** Relative imports that climb to the project root and into a room this one may not import. */
function upward(room, allowed) {
  const forbidden = ALL_ROOMS.filter(
    (r) => r !== room && !allowed.includes(r) && !(room === 'workflows' && r === 'activities'),
  );
  const patterns = [
    {
      regex: `^(\\.\\./)+(${forbidden.join('|')})(/|$)`,
      message: `${room}/ imports only ${allowed.length ? allowed.join(', ') : 'itself'} (docs/architecture.md, "The rooms and the import direction").`,
    },
  ];
  if (room === 'workflows')
    patterns.push({
      regex: '^(\\.\\./)+activities(/|$)',
      allowTypeImports: true,
      message: 'Workflows import activity types only.',
    });
  return patterns;
}

/** Workflow code is deterministic and does no I/O (STYLE.md §3). */
const WORKFLOW_PATTERNS = [
  { group: ['node:*'], message: 'Workflows are deterministic: no Node built-ins.' },
  {
    group: [
      'pg',
      'pg-*',
      '@slack/*',
      'express',
      'pino*',
      'undici',
      'axios',
      'node-fetch',
      '@electric-sql/*',
      'standardwebhooks',
    ],
    message: 'Workflows do no I/O: call an activity.',
  },
  {
    group: ['@temporalio/client', '@temporalio/worker', '@temporalio/activity'],
    message: 'Workflows use @temporalio/workflow only.',
  },
];

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      '.tools/**',
      '.data/**',
      'coverage/**',
      'dist/**',
      '.dependency-cruiser.cjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },
  {
    // Tests read loosely typed JSON from fakes and responses.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  // The rooms and the one direction of their imports (docs/architecture.md): a room imports only the
  // rooms listed for it, never one above; dependency-cruiser (.dependency-cruiser.cjs) fails on any
  // import circle. Type-only imports of the activities are allowed in workflows (proxyActivities<T>).
  ...Object.entries(ROOMS).map(([room, allowed]) => ({
    files: [`${room}/**/*.ts`],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            ...(room === 'workflows' ? WORKFLOW_PATTERNS : []),
            ...(room === 'contracts'
              ? [{ group: ['node:*'], message: 'Contracts are pure: the workflow bundle imports them.' }]
              : []),
            ...upward(room, allowed),
          ],
        },
      ],
    },
  })),
);
