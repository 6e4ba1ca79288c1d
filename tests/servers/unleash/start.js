// Launcher for the real Unleash server used by Marvin's tests (see tests/servers/unleash.py).
//
// Run with the Node 22 that tests/servers/install-unleash puts beside unleash-server:
//   node start.js migrate   migrate the database named in the options, then exit
//   node start.js serve     start Unleash; once it listens, write {"port", "pid", "version"}
//                           to options.readyFile (atomically) and keep running
// The options come as JSON in the environment variable MARVIN_UNLEASH_OPTIONS:
//   {home, db: {host, port, user, password, database, disableMigration}, host, port,
//    readyFile, logLevel, initApiTokens: [{secret, type, environment, projects, tokenName}]}
// `home` is the install directory (.cache/unleash), whose node_modules holds unleash-server.
// The server exits when its standard input closes (the test process died) or on SIGTERM.
import { existsSync, readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { registerHooks } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const [mode] = process.argv.slice(2);
const options = JSON.parse(process.env.MARVIN_UNLEASH_OPTIONS ?? '{}');

// Faster start (~1-2 s of ~4): Node 22 re-parses a package's whole "exports" map each time it
// looks up the format of one of its files, and date-fns (imported by Unleash) has a 147 kB
// map and ~250 files. For a relative `import './x.js'` inside a package whose package.json
// says "type": "module", the answer is known: that URL, format "module". Anything else goes
// to Node's own resolver, as does a file that does not exist (for Node's own error).
// MARVIN_UNLEASH_FAST_RESOLVE=0 turns this off.
if (process.env.MARVIN_UNLEASH_FAST_RESOLVE !== '0') {
    const typeOfDir = new Map();
    const packageType = (dir) => {
        let type = typeOfDir.get(dir);
        if (type === undefined) {
            const manifest = path.join(dir, 'package.json');
            if (existsSync(manifest)) {
                try {
                    type = JSON.parse(readFileSync(manifest, 'utf8')).type ?? 'none';
                } catch {
                    type = 'none';
                }
            } else {
                const parent = path.dirname(dir);
                type = parent === dir ? 'none' : packageType(parent);
            }
            typeOfDir.set(dir, type);
        }
        return type;
    };
    registerHooks({
        resolve(specifier, context, nextResolve) {
            if (
                (specifier.startsWith('./') || specifier.startsWith('../')) &&
                specifier.endsWith('.js') &&
                context.parentURL?.startsWith('file:') &&
                context.conditions?.includes('import')
            ) {
                const url = new URL(specifier, context.parentURL);
                const file = fileURLToPath(url);
                if (existsSync(file) && packageType(path.dirname(file)) === 'module') {
                    return { url: url.href, format: 'module', shortCircuit: true };
                }
            }
            return nextResolve(specifier, context);
        },
    });
}

// The package's entry point ("exports": "./dist/lib/server-impl.js"), by path: this file stays
// in the repository, the package in the install directory.
const entry = path.join(options.home, 'node_modules/unleash-server/dist/lib/server-impl.js');
const { migrateDb, start } = await import(pathToFileURL(entry).href);

const config = {
    db: {
        driver: 'postgres',
        schema: 'public',
        ssl: false,
        pool: { min: 0, max: 4 },
        applicationName: 'unleash',
        ...options.db,
    },
    server: {
        host: options.host ?? '127.0.0.1',
        port: options.port ?? 0, // 0: the kernel picks a free port, reported in readyFile
        unleashUrl: 'http://127.0.0.1',
        gracefulShutdownEnable: true,
        gracefulShutdownTimeout: 200,
    },
    authentication: {
        type: 'open-source',
        enableApiToken: true,
        createAdminUser: true, // admin / unleash4all
        initApiTokens: options.initApiTokens ?? [],
    },
    versionCheck: { enable: false }, // no internet here: don't call version.unleash.run
    logLevel: options.logLevel ?? 'warn',
};

if (mode === 'migrate') {
    await migrateDb(config);
    process.exit(0);
} else if (mode === 'serve') {
    const unleash = await start(config);
    const { port } = unleash.server.address();
    if (options.readyFile) {
        const tmp = `${options.readyFile}.tmp`;
        await writeFile(tmp, JSON.stringify({ port, pid: process.pid, version: unleash.version }));
        await rename(tmp, options.readyFile);
    }
    // Stop with the test process, even when it is killed without a chance to clean up.
    process.stdin.on('end', () => process.kill(process.pid, 'SIGTERM'));
    process.stdin.on('error', () => process.kill(process.pid, 'SIGTERM'));
    process.stdin.resume();
} else {
    console.error('usage: node start.js migrate|serve (options in MARVIN_UNLEASH_OPTIONS)');
    process.exit(2);
}
