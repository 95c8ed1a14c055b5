/**
 * Every relative link in README.md and docs/ points at a file that exists, and every #anchor at a
 * heading of that file (GitHub's slugs, from github-slugger, the package GitHub's own renderer
 * follows). Code blocks and inline code are skipped. Used by test/unit/docs-links.test.ts.
 *
 *   npx tsx tools/check-links.ts
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import GithubSlugger from 'github-slugger';
import { PROJECT_ROOT } from '../lib/paths';

export interface BrokenLink {
  file: string;
  line: number;
  target: string;
  problem: string;
}

/** README.md and every markdown file under docs/, relative to the root. */
export function markdownFiles(root = PROJECT_ROOT): string[] {
  const files = ['README.md'];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (rel.endsWith('.md')) files.push(rel);
    }
  };
  if (existsSync(path.join(root, 'docs'))) walk('docs');
  return files;
}

/** Fenced code blocks blanked out, line numbers kept. */
const withoutCode = (text: string) =>
  text.replace(/^(```|~~~)[\s\S]*?^\1/gm, (m) => m.replace(/[^\n]/g, ' '));

export function anchorsOf(markdown: string): Set<string> {
  const slugger = new GithubSlugger();
  const anchors = new Set<string>();
  for (const line of withoutCode(markdown).split('\n')) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    // What GitHub slugs is the heading's text: links and inline markup reduced to their words.
    const text = m[1]!
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .replace(/<[^>]+>/g, '')
      .replace(/[`*]/g, '');
    anchors.add(slugger.slug(text));
  }
  return anchors;
}

export function brokenLinks(root = PROJECT_ROOT): { checked: number; files: number; broken: BrokenLink[] } {
  const files = markdownFiles(root);
  const anchorCache = new Map<string, Set<string>>();
  const anchors = (file: string) => {
    if (!anchorCache.has(file)) anchorCache.set(file, anchorsOf(readFileSync(path.join(root, file), 'utf8')));
    return anchorCache.get(file)!;
  };
  const broken: BrokenLink[] = [];
  let checked = 0;
  for (const file of files) {
    const lines = withoutCode(readFileSync(path.join(root, file), 'utf8'))
      .replace(/`[^`\n]*`/g, (m) => ' '.repeat(m.length))
      .split('\n');
    lines.forEach((text, i) => {
      for (const m of text.matchAll(/!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
        const target = m[1]!;
        if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, ...
        checked += 1;
        const [p, anchor] = target.split('#') as [string, string | undefined];
        const dest = p ? path.normalize(path.join(path.dirname(file), decodeURIComponent(p))) : file;
        let problem: string | undefined;
        if (!existsSync(path.join(root, dest))) problem = 'no such file';
        else if (anchor !== undefined) {
          if (statSync(path.join(root, dest)).isDirectory() || !dest.endsWith('.md'))
            problem = 'an anchor on a file that is not markdown';
          else if (!anchors(dest).has(anchor)) problem = `no heading with the anchor #${anchor} in ${dest}`;
        }
        if (problem) broken.push({ file, line: i + 1, target, problem });
      }
    });
  }
  return { checked, files: files.length, broken };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = brokenLinks();
  for (const b of r.broken) console.log(`${b.file}:${b.line}: ${b.target}: ${b.problem}`);
  console.log(`${r.files} files, ${r.checked} relative links checked, ${r.broken.length} broken`);
  process.exitCode = r.broken.length ? 1 : 0;
}
