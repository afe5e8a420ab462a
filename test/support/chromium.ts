import { constants, createReadStream, createWriteStream } from 'node:fs';
import { access, chmod, mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createBrotliDecompress } from 'node:zlib';

/**
 * Headless, and quiet on the network: without the background-networking flags Chromium keeps
 * trying to reach Google's services, which on a closed network makes every start slow.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * The Chromium the browser tests drive: `CHROMIUM_PATH` when set (any Chromium or Chrome
 * build), else the headless shell that the `@sparticuz/chromium` dev dependency ships inside its
 * npm package, so `npm test` needs no system browser and downloads nothing.
 *
 * The binary is unpacked from the package's `bin/chromium.br` (brotli) into a folder named
 * after the package's version, once per machine. The package's own `executablePath()` is not
 * used: it unpacks to a fixed `<tmpdir>/chromium` that it reuses whatever version left it there,
 * and spreads graphics libraries over the temporary folder. The headless shell links only
 * against glibc and expat, so it runs on Debian as it does on the Amazon Linux it is built for.
 */
export async function chromiumExecutable(): Promise<string> {
  const override = process.env.CHROMIUM_PATH;
  if (override) {
    await access(override, constants.X_OK).catch((error: unknown) => {
      throw new Error(`CHROMIUM_PATH=${override} is not an executable file`, { cause: error });
    });
    return override;
  }
  const root = await packageRoot('@sparticuz/chromium');
  const { version } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    version: string;
  };
  const target = join(tmpdir(), `outboxkit-headless-shell-${version}`, 'chromium');
  if (await isExecutable(target)) return target;

  const packed = join(root, 'bin', 'chromium.br');
  await mkdir(dirname(target), { recursive: true });
  // Unpacked under a name of its own and renamed when complete: a concurrent run never sees
  // half a binary.
  const partial = `${target}.${process.pid}.partial`;
  try {
    await pipeline(createReadStream(packed), createBrotliDecompress(), createWriteStream(partial));
    await chmod(partial, 0o755);
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { force: true });
    throw new Error(
      `could not unpack Chromium from ${packed} (@sparticuz/chromium ${version}); run npm ci, or set CHROMIUM_PATH to a Chromium build`,
      { cause: error },
    );
  }
  return target;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The folder of an installed package, found from its entry point (its package.json is not exported). */
async function packageRoot(name: string): Promise<string> {
  let dir = dirname(fileURLToPath(import.meta.resolve(name)));
  for (;;) {
    try {
      const manifest = JSON.parse(await readFile(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
      };
      if (manifest.name === name) return dir;
    } catch {
      // No manifest here (or one without the name): keep walking up.
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json of ${name} above its entry point`);
    dir = parent;
  }
}
