/**
 * `npm run lint` runs this after ESLint: no import circle anywhere in the project, and no import up
 * the rooms (tools/rooms.json, the same table ESLint's no-restricted-imports reads), dynamic
 * `import()` included, which ESLint does not see.
 *
 *   npx depcruise --config .dependency-cruiser.cjs contracts lib store activities workflows api worker cli scripts tools test
 */
const { readFileSync } = require('node:fs');
const path = require('node:path');

const { rooms, top } = JSON.parse(readFileSync(path.join(__dirname, 'tools', 'rooms.json'), 'utf8'));
const all = [...Object.keys(rooms), ...top];

const upward = Object.entries(rooms).map(([room, allowed]) => {
  const forbidden = all.filter(
    (r) => r !== room && !allowed.includes(r) && !(room === 'workflows' && r === 'activities'),
  );
  return {
    name: `${room}-imports-down`,
    comment: `${room}/ imports only ${allowed.length ? allowed.join(', ') : 'itself'}`,
    severity: 'error',
    from: { path: `^${room}/` },
    to: { path: `^(${forbidden.join('|')})/` },
  };
});

module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'An import circle: a room imports upward somewhere, or two modules know each other.',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...upward,
    {
      name: 'workflows-import-activity-types-only',
      comment: 'Workflow code runs in the sandbox: activity modules only as types (proxyActivities<T>).',
      severity: 'error',
      from: { path: '^workflows/' },
      to: { path: '^activities/', dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(node_modules|dist|\\.tools|\\.data)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      extensions: ['.ts', '.js', '.cjs', '.mjs', '.json'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
