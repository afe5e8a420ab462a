import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/*
 * Holds every entry point of the package to the list in docs/api.md: what `import` gives at run
 * time, and what the emitted declarations export to TypeScript. An export added or removed
 * without the list fails here, and so does an entry point whose `exports` path does not resolve.
 * Each entry point is loaded through the package's own name, as an application loads it.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PACKAGE = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  name: string;
  exports: Record<string, string | { types: string; default: string }>;
};
const KINDS = ['class', 'function', 'constant', 'type'] as const;
type Kind = (typeof KINDS)[number];

/** docs/api.md: `## \`outboxkit/x\`` opens an entry point, `| \`Name\` | kind | ... |` lists one export. */
function documentedExports(): Map<string, Map<string, Kind>> {
  const entries = new Map<string, Map<string, Kind>>();
  let current: Map<string, Kind> | undefined;
  for (const line of readFileSync(join(ROOT, 'docs/api.md'), 'utf8').split('\n')) {
    const heading = /^## `([^`]+)`\s*$/.exec(line);
    if (heading) {
      current = new Map();
      entries.set(heading[1]!, current);
      continue;
    }
    if (line.startsWith('## ')) current = undefined;
    const row = /^\| `([A-Za-z_$][\w$]*)` \| (\w+) \|/.exec(line);
    if (row && current) {
      assert.ok(KINDS.includes(row[2] as Kind), `docs/api.md: unknown kind ${row[2]} of ${row[1]}`);
      assert.ok(!current.has(row[1]!), `docs/api.md lists ${row[1]} twice in one entry point`);
      current.set(row[1]!, row[2] as Kind);
    }
  }
  return entries;
}

function specifierOf(subpath: string): string {
  return subpath === '.' ? PACKAGE.name : `${PACKAGE.name}/${subpath.slice(2)}`;
}

const entryPoints = Object.entries(PACKAGE.exports)
  .filter(([subpath]) => subpath !== './package.json')
  .map(([subpath, target]) => {
    assert.equal(typeof target, 'object', `exports["${subpath}"] names its types and its code`);
    const { types, default: code } = target as { types: string; default: string };
    return { specifier: specifierOf(subpath), types: join(ROOT, types), code: join(ROOT, code) };
  });

const compilerOptions: ts.CompilerOptions = {
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  strict: true,
  skipLibCheck: true,
  types: [],
};

/** Resolves `specifier` as TypeScript does for an ES module of this package. */
function resolveTypes(specifier: string): string | undefined {
  const from = join(ROOT, 'test', 'consumer-of-the-package.mts');
  return ts.resolveModuleName(
    specifier,
    from,
    compilerOptions,
    ts.sys,
    undefined,
    undefined,
    ts.ModuleKind.ESNext,
  ).resolvedModule?.resolvedFileName;
}

/** Every export of each declaration file, with what it is. */
function typeLevelExports(files: readonly string[]): Map<string, Map<string, Kind>> {
  const program = ts.createProgram(files, compilerOptions);
  const checker = program.getTypeChecker();
  const result = new Map<string, Map<string, Kind>>();
  for (const file of files) {
    const source = program.getSourceFile(file);
    assert.ok(source, `${file} is part of the program`);
    const moduleSymbol = checker.getSymbolAtLocation(source);
    assert.ok(moduleSymbol, `${file} is a module`);
    const exports = new Map<string, Kind>();
    for (const symbol of checker.getExportsOfModule(moduleSymbol)) {
      const target =
        symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      exports.set(symbol.name, kindOf(checker, target));
    }
    result.set(file, exports);
  }
  return result;
}

function kindOf(checker: ts.TypeChecker, symbol: ts.Symbol): Kind {
  if (symbol.flags & ts.SymbolFlags.Class) return 'class';
  if (symbol.flags & ts.SymbolFlags.Function) return 'function';
  if (symbol.flags & ts.SymbolFlags.Variable) {
    return checker.getTypeOfSymbol(symbol).getCallSignatures().length > 0 ? 'function' : 'constant';
  }
  return 'type';
}

function describeDifference(actual: Iterable<string>, documented: Iterable<string>): string {
  const a = new Set(actual);
  const d = new Set(documented);
  const extra = [...a].filter((n) => !d.has(n)).sort();
  const missing = [...d].filter((n) => !a.has(n)).sort();
  return `not in docs/api.md: [${extra.join(', ')}]; in docs/api.md but not exported: [${missing.join(', ')}]`;
}

describe('public exports', () => {
  const documented = documentedExports();

  it('docs/api.md has one section per entry point of package.json', () => {
    assert.deepEqual([...documented.keys()].sort(), entryPoints.map((e) => e.specifier).sort());
  });

  it('every entry point resolves to its files, for Node and for TypeScript', () => {
    for (const entry of entryPoints) {
      assert.ok(existsSync(entry.code), `${entry.specifier}: ${entry.code} exists`);
      assert.equal(resolveTypes(entry.specifier), entry.types, `${entry.specifier}: types`);
      assert.equal(
        fileURLToPath(import.meta.resolve(entry.specifier)),
        entry.code,
        `${entry.specifier}: code`,
      );
    }
  });

  for (const entry of entryPoints) {
    it(`${entry.specifier}: what it exports at run time is what docs/api.md lists`, async () => {
      const listed = documented.get(entry.specifier) ?? new Map<string, Kind>();
      const values = [...listed].filter(([, kind]) => kind !== 'type').map(([name]) => name);
      const actual = Object.keys(await import(entry.specifier));
      assert.deepEqual(actual.sort(), values.sort(), describeDifference(actual, values));
    });
  }

  it('what each entry point exports to TypeScript, and as what, is what docs/api.md lists', () => {
    const declared = typeLevelExports(entryPoints.map((e) => e.types));
    for (const entry of entryPoints) {
      const actual = declared.get(entry.types)!;
      const listed = documented.get(entry.specifier) ?? new Map<string, Kind>();
      assert.deepEqual(
        [...actual.keys()].sort(),
        [...listed.keys()].sort(),
        `${entry.specifier}: ${describeDifference(actual.keys(), listed.keys())}`,
      );
      for (const [name, kind] of actual) {
        assert.equal(listed.get(name), kind, `${entry.specifier}: ${name} is a ${kind}`);
      }
    }
  });
});
