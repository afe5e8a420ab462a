import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import ts from 'typescript';
import { deleteConsumerTopology } from './support/delete-consumer-topology.js';
import { AMQP_URL, DATABASE_URL } from './support/env.js';

/**
 * Every ```ts block of README.md and docs/*.md compiles under --strict, against the package's
 * own entry points as a user imports them (`outboxkit`, `outboxkit/nestjs`, ..., resolved by
 * package self-reference through package.json#exports to the built dist/src/*.d.ts), and the
 * blocks marked `run` run against the real Postgres and RabbitMQ.
 *
 * The convention, an HTML comment on the line before a block (invisible on the rendered page):
 *
 *   <!-- snippet: prelude=app -->          prepend test/docs-preludes/app.ts: the context a doc
 *                                          does not repeat (`db`, `pool`, `amqpUrl`, ...);
 *                                          several as prelude=app,quickstart
 *   <!-- snippet: skip reason="..." -->    not compiled; the reason is required
 *   <!-- snippet: module=src/app.ts:testing-app -->
 *                                          the doc's file src/app.ts (which its blocks import as
 *                                          '../src/app.js' and the like) is the module
 *                                          test/docs-preludes/testing-app.ts (in a run too:
 *                                          written next to the run's module)
 *   <!-- snippet: run=NAME names=a,b -->   run: the blocks of one doc with the same NAME run in
 *                                          order as one module, in a child process, against a
 *                                          database of their own; the broker names listed in
 *                                          `names` get a suffix of their own (string literals),
 *                                          and are deleted afterwards
 *
 * A block whose first line is a file name comment (`// src/messages.ts`) is that file: blocks of
 * one doc import each other by those names. Every block is a module of its own.
 *
 * A prelude may have two more sections, used only when the block runs: the text after a line
 * `// @during` replaces the block's `// ...` line (what the application does while it runs, with
 * the assertions of the run), and the text after `// @after` runs at the end.
 */

const exec = promisify(execFile);
const ROOT = resolve(fileURLToPath(import.meta.url), '../../..');
const PRELUDES = join(ROOT, 'test', 'docs-preludes');
/** Where the blocks live, virtually: inside the package, so `outboxkit` resolves to itself. */
const VIRTUAL = join(ROOT, '.docs-snippets');
// The ORM snippets load four ORMs into one process: 11 s was seen on two loaded cores.
const RUN_TIMEOUT_MS = 40_000;

interface Directive {
  readonly prelude: readonly string[];
  readonly skip?: string;
  readonly run?: string;
  readonly names: readonly string[];
  readonly modules: ReadonlyMap<string, string>;
}

interface Block {
  readonly doc: string;
  /** 1-based line of the block's first code line in the doc. */
  readonly line: number;
  readonly code: string;
  readonly directive: Directive;
  /** The block's virtual file. */
  readonly file: string;
  /** The virtual directory of the doc's blocks. */
  readonly root: string;
}

const KEYS = new Set(['prelude', 'skip', 'reason', 'run', 'names', 'module']);

function parseDirective(text: string, where: string): Directive {
  const attributes = new Map<string, string>();
  for (const m of text.matchAll(/([a-z]+)(?:=(?:"([^"]*)"|(\S+)))?/g)) {
    const key = m[1]!;
    assert.ok(KEYS.has(key), `${where}: unknown snippet attribute "${key}"`);
    attributes.set(key, m[2] ?? m[3] ?? '');
  }
  const list = (key: string) => (attributes.get(key) ?? '').split(',').filter(Boolean);
  let skip: string | undefined;
  if (attributes.has('skip')) {
    skip = attributes.get('reason');
    assert.ok(skip, `${where}: a skipped snippet must give a reason="..."`);
  }
  const modules = new Map<string, string>();
  for (const entry of list('module')) {
    const [path, prelude] = entry.split(':');
    assert.ok(path && prelude, `${where}: module=PATH:PRELUDE, got ${entry}`);
    modules.set(path, prelude);
  }
  const run = attributes.has('run') ? attributes.get('run') || 'default' : undefined;
  return {
    prelude: list('prelude'),
    ...(skip === undefined ? {} : { skip }),
    ...(run === undefined ? {} : { run }),
    names: list('names'),
    modules,
  };
}

function extractBlocks(doc: string): Block[] {
  const lines = readFileSync(join(ROOT, doc), 'utf8').split('\n');
  const blocks: Block[] = [];
  const base = doc.replace(/\.md$/, '').replaceAll('/', '-');
  let pending: { directive: Directive; line: number } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const comment = /^<!--\s*snippet:(.*?)-->\s*$/.exec(line);
    if (comment) {
      pending = { directive: parseDirective(comment[1]!, `${doc}:${i + 1}`), line: i + 1 };
      continue;
    }
    const fence = /^(\s*)(`{3,})\s*([\w+-]*)/.exec(line);
    if (!fence) {
      if (line.trim() !== '' && pending) {
        assert.fail(`${doc}:${pending.line}: a snippet comment must come right before a ts block`);
      }
      continue;
    }
    const indent = fence[1]!.length;
    const close = new RegExp(`^\\s*${fence[2]}\\s*$`);
    let end = i + 1;
    while (end < lines.length && !close.test(lines[end]!)) end++;
    const lang = fence[3]!;
    if (lang === 'ts' || lang === 'typescript') {
      const code = lines
        .slice(i + 1, end)
        .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
        .join('\n');
      const named = /^\/\/ ([\w./-]+\.tsx?)\s*$/.exec(code.split('\n')[0] ?? '');
      const name = named ? named[1]! : `line-${i + 2}.ts`;
      blocks.push({
        doc,
        line: i + 2,
        code,
        directive: pending?.directive ?? { prelude: [], names: [], modules: new Map() },
        file: join(VIRTUAL, base, name),
        root: join(VIRTUAL, base),
      });
    } else if (pending) {
      assert.fail(`${doc}:${pending.line}: a snippet comment must come right before a ts block`);
    }
    pending = undefined;
    i = end;
  }
  return blocks;
}

interface Prelude {
  readonly head: string;
  readonly during: string;
  readonly after: string;
}

function readPrelude(name: string): Prelude {
  const path = join(PRELUDES, `${name}.ts`);
  assert.ok(existsSync(path), `no prelude ${relative(ROOT, path)}`);
  const sections = { head: '', during: '', after: '' };
  let section: keyof Prelude = 'head';
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const marker = /^\/\/ @(during|after)\s*$/.exec(line);
    if (marker) section = marker[1] as keyof Prelude;
    else sections[section] += `${line}\n`;
  }
  return sections;
}

/** A virtual file's text, and how its lines map back to the doc. */
interface Source {
  readonly file: string;
  readonly text: string;
  /** Lines [0, headLines) are the preludes'; the rest are the block's from `block.line`. */
  readonly headLines: number;
  readonly block: Block | undefined;
}

function compose(block: Block): Source {
  const head = block.directive.prelude.map((name) => readPrelude(name).head).join('\n');
  const text = head ? `${head}\n${block.code}\n` : `${block.code}\n`;
  return {
    file: block.file,
    text,
    headLines: head ? head.split('\n').length : 0,
    block,
  };
}

const COMPILER_OPTIONS: ts.CompilerOptions = {
  strict: true,
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2023.d.ts'],
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  esModuleInterop: true,
  skipLibCheck: true,
  types: ['node'],
  noEmit: true,
};

/**
 * Type-checks the sources as one program; returns the diagnostics, mapped to the docs.
 * @param options the compiler options, `COMPILER_OPTIONS` by default.
 */
function typeCheck(sources: readonly Source[], options = COMPILER_OPTIONS): string[] {
  const byFile = new Map(sources.map((s) => [s.file, s]));
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile, directoryExists } = host;
  host.getSourceFile = (file, language, ...rest) => {
    const source = byFile.get(file);
    if (source) return ts.createSourceFile(file, source.text, language, true, ts.ScriptKind.TS);
    return getSourceFile.call(host, file, language, ...rest);
  };
  host.fileExists = (file) => byFile.has(file) || fileExists.call(host, file);
  host.readFile = (file) => byFile.get(file)?.text ?? readFile.call(host, file);
  host.directoryExists = (dir) =>
    dir === VIRTUAL || dir.startsWith(`${VIRTUAL}/`) || (directoryExists?.call(host, dir) ?? true);
  const program = ts.createProgram([...byFile.keys()], options, host);
  const messages: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    const source = d.file && byFile.get(d.file.fileName);
    if (!d.file || d.start === undefined || !source) {
      messages.push(`${d.file?.fileName ?? ''} TS${d.code}: ${text}`);
      continue;
    }
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const where =
      source.block && line >= source.headLines
        ? `${source.block.doc}:${source.block.line + line - source.headLines}:${character + 1}`
        : `${relative(ROOT, source.file)}:${line + 1}:${character + 1}`;
    messages.push(`${where} TS${d.code}: ${text}`);
  }
  return messages;
}

function docs(): string[] {
  const dir = join(ROOT, 'docs');
  return [
    'README.md',
    ...readdirSync(dir)
      .filter((f) => f.endsWith('.md'))
      .sort()
      .map((f) => `docs/${f}`),
  ];
}

/** The run groups: the blocks of one doc with one `run` name, in order. */
function runGroups(blocks: readonly Block[]): Map<string, Block[]> {
  const groups = new Map<string, Block[]>();
  for (const b of blocks) {
    if (b.directive.run === undefined) continue;
    const key = `${b.doc}#${b.directive.run}`;
    groups.set(key, [...(groups.get(key) ?? []), b]);
  }
  return groups;
}

/** One module of a run group: preludes' heads, the blocks (with `// ...` filled), the afters. */
function runSource(group: readonly Block[]): Source {
  const names = [...new Set(group.flatMap((b) => b.directive.prelude))];
  const preludes = names.map(readPrelude);
  const during = preludes.map((p) => p.during.trim()).filter(Boolean);
  let filled = false;
  const body = group.map((b) =>
    b.code
      .split('\n')
      .map((line) => {
        if (!/^\s*\/\/ \.\.\./.test(line) || filled) return line;
        filled = true;
        return during.join('\n');
      })
      .join('\n'),
  );
  assert.ok(
    filled || during.length === 0,
    `${group[0]!.doc}: a run with a @during section needs a "// ..." line`,
  );
  const text = [...preludes.map((p) => p.head), ...body, ...preludes.map((p) => p.after), ''].join(
    '\n',
  );
  const first = group[0]!;
  return {
    file: join(dirname(first.file), `run-${first.directive.run}.ts`),
    text,
    headLines: 0,
    block: undefined,
  };
}

const blocks = docs().flatMap(extractBlocks);
const compiled = blocks.filter((b) => b.directive.skip === undefined);
const groups = runGroups(compiled);

/** Every compiled block as a source, with the modules they import and the run groups. */
function allSources(): Source[] {
  const sources = new Map<string, Source>();
  for (const b of compiled) {
    assert.ok(!sources.has(b.file), `${b.doc}:${b.line}: two blocks are ${b.file}`);
    sources.set(b.file, compose(b));
    for (const [path, prelude] of b.directive.modules) {
      const file = resolve(b.root, path);
      const text = readFileSync(join(PRELUDES, `${prelude}.ts`), 'utf8');
      sources.set(file, { file, text, headLines: 0, block: undefined });
    }
  }
  for (const group of groups.values()) {
    const source = runSource(group);
    sources.set(source.file, source);
  }
  return [...sources.values()];
}

describe('the TypeScript snippets of README.md and docs/*.md', () => {
  it('compile under --strict against the package entry points', () => {
    const diagnostics = typeCheck(allSources());
    assert.deepEqual(diagnostics, [], `snippets that do not compile:\n${diagnostics.join('\n')}`);
    // The count, for the record: every block is either compiled or skipped with a reason.
    const skipped = blocks.filter((b) => b.directive.skip !== undefined);
    for (const b of skipped) {
      process.stdout.write(`# skipped ${b.doc}:${b.line}: ${b.directive.skip}\n`);
    }
    process.stdout.write(
      `# ${compiled.length} snippets compiled, ${groups.size} runs, ${skipped.length} skipped\n`,
    );
  });

  // A team's stricter tsconfig: an optional field left `undefined` (an unset environment
  // variable, a value read from config) must be taken as the runtime takes it, as left out.
  it('compile with exactOptionalPropertyTypes too', () => {
    const diagnostics = typeCheck(allSources(), {
      ...COMPILER_OPTIONS,
      exactOptionalPropertyTypes: true,
    });
    assert.deepEqual(diagnostics, [], `snippets that do not compile:\n${diagnostics.join('\n')}`);
  });

  it('include the Quick start and the consumer example among the runs', () => {
    const runs = [...groups.keys()];
    assert.ok(
      runs.some((k) => k.startsWith('README.md#')),
      runs.join(', '),
    );
    assert.ok(
      runs.some((k) => k.startsWith('docs/consumer.md#')),
      runs.join(', '),
    );
  });

  describe('run against the real Postgres and RabbitMQ', () => {
    const admin = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    const workDir = join(ROOT, 'dist', 'test', `docs-snippets-run-${process.pid}`);
    before(() => mkdir(workDir, { recursive: true }));
    after(async () => {
      await rm(workDir, { recursive: true, force: true });
      await admin.end();
    });

    for (const [key, group] of groups) {
      it(key, { timeout: RUN_TIMEOUT_MS * 3 }, async () => {
        const suffix = randomBytes(4).toString('hex');
        const database = `docs_${suffix}`;
        const names = [...new Set(group.flatMap((b) => b.directive.names))];
        let js = ts.transpileModule(runSource(group).text, {
          compilerOptions: { ...COMPILER_OPTIONS, module: ts.ModuleKind.ESNext, noEmit: false },
        }).outputText;
        // Longest first, so that `orders.unrouted` is not renamed as `orders` + `.unrouted`.
        for (const name of [...names].sort((a, b) => b.length - a.length)) {
          const literal = new RegExp(`(['"\`])${name.replaceAll('.', '\\.')}\\1`, 'g');
          js = js.replace(literal, `$1${name}_${suffix}$1`);
        }
        const file = join(workDir, `${key.replace(/[^\w]+/g, '-')}-${suffix}.js`);
        await writeFile(file, js);
        // The doc's own modules (module=PATH:PRELUDE), next to the run's module.
        for (const [path, prelude] of new Map(group.flatMap((b) => [...b.directive.modules]))) {
          const module = join(workDir, path.replace(/\.ts$/, '.js'));
          await mkdir(dirname(module), { recursive: true });
          const text = readFileSync(join(PRELUDES, `${prelude}.ts`), 'utf8');
          await writeFile(
            module,
            ts.transpileModule(text, {
              compilerOptions: { ...COMPILER_OPTIONS, module: ts.ModuleKind.ESNext, noEmit: false },
            }).outputText,
          );
        }
        await admin.query(`CREATE DATABASE ${database}`);
        const url = new URL(DATABASE_URL);
        url.pathname = `/${database}`;
        try {
          const { stderr } = await exec(process.execPath, ['--enable-source-maps', file], {
            cwd: ROOT,
            timeout: RUN_TIMEOUT_MS,
            killSignal: 'SIGKILL',
            env: { ...process.env, DATABASE_URL: url.toString(), AMQP_URL },
          }).catch((error: Error & { stdout?: string; stderr?: string; killed?: boolean }) => {
            const timedOut = error.killed ? ` (killed after ${RUN_TIMEOUT_MS} ms)` : '';
            throw new Error(
              `${key} failed${timedOut}:\n${error.stderr ?? ''}${error.stdout ?? ''}\n--- ran:\n${js}`,
              { cause: error },
            );
          });
          assert.doesNotMatch(stderr, /UnhandledPromiseRejection/, stderr);
        } finally {
          await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
          // Each name as an exchange, and as a consumer on the default retry policy.
          await deleteConsumerTopology(
            names.map((n) => ({ name: `${n}_${suffix}`, exchange: `${n}_${suffix}` })),
          );
          await rm(file, { force: true });
        }
      });
    }
  });
});
