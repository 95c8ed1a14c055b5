/**
 * rsyslog, the syslog daemon Debian ships, as the real receiver the syslog transport is tested
 * against. `resolveRsyslog` finds `rsyslogd` (PATH, /usr/sbin) with its OpenSSL network stream
 * driver; when either is missing it installs the Debian packages `rsyslog` and `rsyslog-openssl`
 * with apt-get (the machines of this project run as root; Debian's policy-rc.d keeps the system
 * service from starting, and nothing here uses it).
 *
 * `startRsyslog` runs a private rsyslogd in the foreground (`-n`) with its own config, pid file and
 * work folder in a temp folder, listening on loopback only: UDP (RFC 5426), plain TCP and TLS
 * (RFC 5425, OpenSSL driver, anonymous clients, a self-signed certificate) with octet-counted
 * framing. Every message received is parsed by rsyslog (RFC 5424 fields, and the structured data
 * by mmpstrucdata, which undoes the §6.3.3 escaping) and written as one JSON line per message,
 * raw bytes included, to a file `messages()` reads.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import {
  accessSync,
  constants,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { selfSignedCert } from './self-signed-cert';
import { captureOutput, freePort } from './temporal-dev';

export const RSYSLOG_PACKAGES = ['rsyslog', 'rsyslog-openssl'] as const;
const TLS_DRIVER = 'lmnsd_ossl.so';

function executable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function findRsyslogd(): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/sbin'];
  return dirs.map((d) => path.join(d, 'rsyslogd')).find(executable);
}

/** Whether the OpenSSL stream driver is installed where Debian puts rsyslog's modules. */
function hasTlsDriver(): boolean {
  const libs = ['/usr/lib', '/usr/lib64'].filter(existsSync);
  const dirs = libs.flatMap((lib) => [
    path.join(lib, 'rsyslog'),
    ...readdirSync(lib).map((arch) => path.join(lib, arch, 'rsyslog')),
  ]);
  return dirs.some((d) => existsSync(path.join(d, TLS_DRIVER)));
}

function aptInstall(): void {
  if (process.getuid?.() !== 0) {
    throw new Error(
      `rsyslogd (with its TLS driver) is missing and this process is not root: run \`sudo apt-get install -y --no-install-recommends ${RSYSLOG_PACKAGES.join(' ')}\``,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = () =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...RSYSLOG_PACKAGES], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env,
    });
  let r = install();
  if (r.status !== 0) {
    // A fresh machine may have no (or stale) package lists.
    spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    r = install();
  }
  if (r.status !== 0)
    throw new Error(`apt-get install ${RSYSLOG_PACKAGES.join(' ')} failed (exit ${r.status})`);
}

/** The path of `rsyslogd`, installed from Debian's packages when it (or its TLS driver) is missing. */
export function resolveRsyslog(): string {
  let bin = findRsyslogd();
  if (!bin || !hasTlsDriver()) {
    aptInstall();
    bin = findRsyslogd();
  }
  if (!bin) throw new Error('rsyslogd not found after installing it');
  return bin;
}

/** One message as rsyslog parsed it. */
export interface ReceivedSyslog {
  /** Which listener took it: `udp`, `tcp` or `tls`. */
  input: string;
  pri: number;
  version: string;
  hostname: string;
  appName: string;
  procid: string;
  msgid: string;
  /** The STRUCTURED-DATA part as received (escaped). */
  structuredData: string;
  /** SD-ID -> param -> value, parsed and unescaped by rsyslog's mmpstrucdata. */
  sd: Record<string, Record<string, string>>;
  msg: string;
  /** The message exactly as received (without the octet count). */
  raw: string;
}

export interface RsyslogServer {
  host: string;
  udpPort: number;
  tcpPort: number;
  tlsPort: number;
  /** The PEM of the TLS listener's self-signed certificate (a client's CA). */
  caPem: string;
  /** Every message received so far. */
  messages(): ReceivedSyslog[];
  /** Waits until a received message matches (polls the output file). */
  waitFor(match: (m: ReceivedSyslog) => boolean, timeoutMs?: number): Promise<ReceivedSyslog>;
  /** Stops the daemon, keeping its ports and files (start it again with `restart`). */
  kill(): Promise<void>;
  restart(): Promise<void>;
  /** Stops the daemon and removes its folder. */
  stop(): Promise<void>;
}

export interface RsyslogOptions {
  logFile?: string;
  readyTimeoutMs?: number;
}

function config(
  dir: string,
  out: string,
  ports: { udp: number; tcp: number; tls: number },
  cert: { certFile: string; keyFile: string },
): string {
  const q = (s: string) => JSON.stringify(s);
  return `global(workDirectory=${q(dir)} maxMessageSize="64k")
module(load="imudp")
module(load="imtcp")
module(load="mmpstrucdata")
template(name="received" type="list" option.jsonf="on") {
  property(outname="input" name="inputname" format="jsonf")
  property(outname="pri" name="pri" format="jsonf")
  property(outname="version" name="protocol-version" format="jsonf")
  property(outname="hostname" name="hostname" format="jsonf")
  property(outname="appName" name="app-name" format="jsonf")
  property(outname="procid" name="procid" format="jsonf")
  property(outname="msgid" name="msgid" format="jsonf")
  property(outname="structuredData" name="structured-data" format="jsonf")
  property(outname="sd" name="$!rfc5424-sd" format="jsonf")
  property(outname="msg" name="msg" format="jsonf")
  property(outname="raw" name="rawmsg" format="jsonf")
}
ruleset(name="received") {
  action(type="mmpstrucdata" sd_name.lowercase="off")
  action(type="omfile" file=${q(out)} template="received")
}
input(type="imudp" address="127.0.0.1" port="${ports.udp}" ruleset="received" name="udp")
input(type="imtcp" address="127.0.0.1" port="${ports.tcp}" ruleset="received" name="tcp")
input(type="imtcp" address="127.0.0.1" port="${ports.tls}" ruleset="received" name="tls"
      streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon"
      streamDriver.CAFile=${q(cert.certFile)} streamDriver.certFile=${q(cert.certFile)} streamDriver.keyFile=${q(cert.keyFile)})
`;
}

function parseLine(line: string): ReceivedSyslog {
  const j = JSON.parse(line) as Record<string, string>;
  let sd: ReceivedSyslog['sd'] = {};
  try {
    sd = j.sd ? (JSON.parse(j.sd) as ReceivedSyslog['sd']) : {};
  } catch {
    // not parseable structured data: left empty, `structuredData` still has it
  }
  return {
    input: j.input ?? '',
    pri: Number(j.pri),
    version: j.version ?? '',
    hostname: j.hostname ?? '',
    appName: j.appName ?? '',
    procid: j.procid ?? '',
    msgid: j.msgid ?? '',
    structuredData: j.structuredData ?? '',
    sd,
    msg: j.msg ?? '',
    raw: j.raw ?? '',
  };
}

async function listening(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startRsyslog(opts: RsyslogOptions = {}): Promise<RsyslogServer> {
  const bin = resolveRsyslog();
  const host = '127.0.0.1';
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ks-rsyslog-'));
  const cert = selfSignedCert(dir, 'rsyslog');
  const ports = { udp: await freePort(), tcp: await freePort(), tls: await freePort() };
  const out = path.join(dir, 'received.jsonl');
  const conf = path.join(dir, 'rsyslog.conf');
  const pidFile = path.join(dir, 'rsyslogd.pid');
  writeFileSync(conf, config(dir, out, ports, cert));

  let child: ChildProcess | undefined;
  let exited: string | undefined;

  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const done = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5_000);
    await done;
    clearTimeout(timer);
  };

  const start = async () => {
    exited = undefined;
    rmSync(pidFile, { force: true });
    const c = spawn(bin, ['-n', '-f', conf, '-i', pidFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    captureOutput(c, opts.logFile);
    c.once('exit', (code, signal) => {
      exited = `rsyslogd exited (code ${code}, signal ${signal})`;
    });
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 15_000);
    // The inputs start together: once both TCP listeners answer, UDP is bound too.
    while (!((await listening(host, ports.tcp)) && (await listening(host, ports.tls)))) {
      if (exited) throw new Error(`${exited}${opts.logFile ? `; see ${opts.logFile}` : ''}`);
      if (Date.now() > deadline) {
        await kill();
        throw new Error(`rsyslogd not listening on ${host}:${ports.tcp}/${ports.tls}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  const messages = () =>
    existsSync(out)
      ? readFileSync(out, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map(parseLine)
      : [];

  try {
    await start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }

  return {
    host,
    udpPort: ports.udp,
    tcpPort: ports.tcp,
    tlsPort: ports.tls,
    caPem: cert.certPem,
    messages,
    async waitFor(match, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = messages().find(match);
        if (found) return found;
        if (Date.now() > deadline)
          throw new Error(`rsyslog received no matching message within ${timeoutMs} ms`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    kill,
    async restart() {
      await kill();
      await start();
    },
    async stop() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
