/**
 * deploy/kubernetes: every object is valid against the Kubernetes OpenAPI schemas (kubernetes-models,
 * offline: the schemas ship in the package), and the manifests wire up the processes as they are:
 * the worker scaled by an HPA, the ingress behind a Service, probes on the health endpoints the
 * processes serve, secrets as files (<VAR>_FILE) that loadConfig reads, non-root and read-only.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { loadConfig, SECRET_FILE_VARS } from '../lib/config';

const root = fileURLToPath(new URL('..', import.meta.url));
const dir = path.join(root, 'deploy/kubernetes');
const kustomization = parse(readFileSync(path.join(dir, 'kustomization.yaml'), 'utf8')) as {
  resources: string[];
  images: Array<{ name: string }>;
};
const files = kustomization.resources;
const objects: any[] = files.flatMap((f) =>
  parseAllDocuments(readFileSync(path.join(dir, f), 'utf8')).map((d) => d.toJS()),
);
const compose = parse(readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as any;

function find(kind: string, name: string): any {
  const o = objects.find((x) => x.kind === kind && x.metadata?.name === name);
  expect(o, `${kind}/${name}`).toBeDefined();
  return o;
}

/** The kubernetes-models class of an object: kubernetes-models/<group>/<version>/<Kind>. */
async function modelOf(o: { apiVersion: string; kind: string }): Promise<any> {
  const [group, version] = o.apiVersion.includes('/') ? o.apiVersion.split('/') : [undefined, o.apiVersion];
  const mod = await import(`kubernetes-models/${group ? `${group}/` : ''}${version}/${o.kind}`);
  return mod[o.kind] ?? mod.default;
}

async function validate(o: any): Promise<void> {
  const Model = await modelOf(o);
  new Model(o).validate();
}

let scratch: string;
beforeAll(() => {
  // The secret files as docker/generate-secrets.sh writes them: `kubectl create secret generic
  // killswitch-secrets --from-file=secrets/` turns each into a key of the same name.
  scratch = mkdtempSync(path.join(os.tmpdir(), 'ks-k8s-'));
  cpSync(path.join(root, 'docker'), path.join(scratch, 'docker'), { recursive: true });
  execFileSync('sh', [path.join(scratch, 'docker', 'generate-secrets.sh')], { stdio: 'pipe' });
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const configMap = () => find('ConfigMap', 'killswitch-config').data as Record<string, string>;

/** A container's environment as the kubelet gives it, secret volumes read from the generated files. */
function containerEnv(deployment: any): Record<string, string> {
  const spec = deployment.spec.template.spec;
  const c = spec.containers[0];
  const env: Record<string, string> = {};
  for (const from of c.envFrom ?? []) if (from.configMapRef) Object.assign(env, configMap());
  const secretMount = c.volumeMounts.find((m: any) =>
    spec.volumes.find((v: any) => v.name === m.name && v.secret?.secretName === 'killswitch-secrets'),
  );
  for (const e of c.env ?? []) {
    if (e.value === undefined) continue;
    env[e.name] = e.value.startsWith(`${secretMount.mountPath}/`)
      ? path.join(scratch, 'secrets', path.basename(e.value))
      : e.value;
  }
  return env;
}

describe('deploy/kubernetes', () => {
  it('lists every manifest in the kustomization', () => {
    const yamls = readdirSync(dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...files].sort()).toEqual(yamls.sort());
    expect(kustomization.images.map((i) => i.name)).toEqual(['secret-kill-switch']);
  });

  it('is valid against the Kubernetes schemas, and the check catches a broken object', async () => {
    expect(objects.map((o) => `${o.apiVersion} ${o.kind}`).sort()).toEqual(
      [
        'apps/v1 Deployment',
        'apps/v1 Deployment',
        'autoscaling/v2 HorizontalPodAutoscaler',
        'networking.k8s.io/v1 Ingress',
        'policy/v1 PodDisruptionBudget',
        'policy/v1 PodDisruptionBudget',
        'v1 ConfigMap',
        'v1 Service',
      ].sort(),
    );
    for (const o of objects)
      await expect(validate(o), `${o.kind}/${o.metadata.name}`).resolves.toBeUndefined();
    const broken = structuredClone(find('Deployment', 'killswitch-worker'));
    broken.spec.template.spec.containers[0].livenessProbe.httpGet.port = { name: 'health' };
    await expect(validate(broken)).rejects.toThrow();
    const broken2 = structuredClone(find('HorizontalPodAutoscaler', 'killswitch-worker'));
    broken2.spec.minReplicas = 'two';
    await expect(validate(broken2)).rejects.toThrow();
  });

  it('selects its own pods: Deployment selectors, Service, HPA and PDBs', () => {
    for (const name of ['killswitch-worker', 'killswitch-ingress']) {
      const d = find('Deployment', name);
      expect(d.spec.template.metadata.labels).toMatchObject(d.spec.selector.matchLabels);
      const pdb = find('PodDisruptionBudget', name);
      expect(pdb.spec.selector.matchLabels).toEqual(d.spec.selector.matchLabels);
    }
    const svc = find('Service', 'killswitch-ingress');
    const ingress = find('Deployment', 'killswitch-ingress');
    expect(ingress.spec.template.metadata.labels).toMatchObject(svc.spec.selector);
    const worker = find('Deployment', 'killswitch-worker');
    expect(Object.entries(worker.spec.template.metadata.labels)).not.toEqual(
      expect.arrayContaining(Object.entries(svc.spec.selector)),
    );
    const ports = ingress.spec.template.spec.containers[0].ports.map((p: any) => p.name);
    expect(ports).toContain(svc.spec.ports[0].targetPort);
    const ing = find('Ingress', 'killswitch-ingress');
    expect(ing.spec.rules[0].http.paths[0].backend.service).toEqual({
      name: svc.metadata.name,
      port: { name: 'http' },
    });
    expect(ing.spec.tls[0].hosts).toEqual([ing.spec.rules[0].host]);
  });

  it('scales the worker horizontally on CPU, which its pods request', () => {
    const hpa = find('HorizontalPodAutoscaler', 'killswitch-worker');
    expect(hpa.spec.scaleTargetRef).toEqual({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      name: 'killswitch-worker',
    });
    expect(hpa.spec.minReplicas).toBeGreaterThanOrEqual(2);
    expect(hpa.spec.maxReplicas).toBeGreaterThan(hpa.spec.minReplicas);
    expect(hpa.spec.metrics[0].resource.name).toBe('cpu');
    const worker = find('Deployment', 'killswitch-worker');
    expect(worker.spec.template.spec.containers[0].resources.requests.cpu).toBeDefined();
    expect(worker.spec.template.spec.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(60);
  });

  it('probes /livez and /readyz on the ports the processes serve them on', () => {
    const worker = find('Deployment', 'killswitch-worker');
    const ingress = find('Deployment', 'killswitch-ingress');
    const cases = [
      { d: worker, port: loadConfig(containerEnv(worker)).observability.workerHealthPort },
      { d: ingress, port: loadConfig(containerEnv(ingress)).port },
    ];
    for (const { d, port } of cases) {
      const c = d.spec.template.spec.containers[0];
      const portOf = (p: string | number) =>
        typeof p === 'number' ? p : c.ports.find((x: any) => x.name === p)?.containerPort;
      expect(c.livenessProbe.httpGet.path).toBe('/livez');
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      expect(c.startupProbe.httpGet.path).toBe('/livez');
      for (const probe of [c.livenessProbe, c.readinessProbe, c.startupProbe])
        expect(portOf(probe.httpGet.port), d.metadata.name).toBe(port);
    }
    expect(worker.spec.template.spec.containers[0].command).toBeUndefined(); // the image's CMD: the worker
    expect(ingress.spec.template.spec.containers[0].command).toEqual(compose.services.api.command);
  });

  it('runs as non-root on a read-only root filesystem, with resources set', () => {
    for (const name of ['killswitch-worker', 'killswitch-ingress']) {
      const pod = find('Deployment', name).spec.template.spec;
      expect(pod.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      // The non-root user can read the mounted Secret: root-owned files, group-owned via fsGroup.
      expect(pod.securityContext.fsGroup).toBe(pod.securityContext.runAsGroup);
      const secretVolume = pod.volumes.find((v: any) => v.secret?.secretName === 'killswitch-secrets');
      expect(secretVolume.secret.defaultMode & 0o040, 'group may read the secret files').toBe(0o040);
      expect(secretVolume.secret.defaultMode & 0o007, 'others may not').toBe(0);
      expect(secretVolume.secret.defaultMode).toBe(0o440);
      expect(pod.automountServiceAccountToken).toBe(false);
      const c = pod.containers[0];
      expect(c.securityContext).toEqual({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.resources.requests).toMatchObject({ cpu: expect.any(String), memory: expect.any(String) });
      expect(c.resources.limits.memory).toBeDefined();
      expect(c.image).toMatch(/^secret-kill-switch:/);
    }
  });

  it('gives secrets as files from the Secret, which loadConfig reads; the ingress gets no owned-system credentials', () => {
    const secretKeys = new Set(Object.keys(compose.secrets));
    for (const name of ['killswitch-worker', 'killswitch-ingress']) {
      const d = find('Deployment', name);
      const c = d.spec.template.spec.containers[0];
      for (const e of c.env) {
        expect(
          (SECRET_FILE_VARS as readonly string[]).includes(e.name) && e.value !== undefined,
          `${name}: ${e.name} inline`,
        ).toBe(false);
        if (e.name.endsWith('_FILE'))
          expect(
            secretKeys.has(path.basename(e.value)),
            `${name}: ${e.value} is a key of the generated secrets`,
          ).toBe(true);
        if (e.valueFrom?.secretKeyRef) expect(e.valueFrom.secretKeyRef.optional).toBe(true);
      }
      expect(
        Object.keys(configMap()).filter((k) => (SECRET_FILE_VARS as readonly string[]).includes(k)),
      ).toEqual([]);
      const config = loadConfig(containerEnv(d));
      expect(config.databaseUrl).toMatch(/^postgres:\/\/killswitch:/);
      expect(config.serverKey).toBeDefined();
      expect(config.temporal.address).toBe(configMap().TEMPORAL_ADDRESS);
    }
    const api = loadConfig(containerEnv(find('Deployment', 'killswitch-ingress')));
    expect(api.webhook.genericSecrets?.length).toBe(1);
    const ingressText = JSON.stringify(find('Deployment', 'killswitch-ingress'));
    expect(ingressText).not.toMatch(/owned-systems|PAGERDUTY/);
    const workerText = JSON.stringify(find('Deployment', 'killswitch-worker'));
    expect(workerText).toContain('killswitch-owned-systems');
    expect(workerText).not.toMatch(/GENERIC_WEBHOOK_SECRETS|CODEC_TOKENS/);
  });
});
