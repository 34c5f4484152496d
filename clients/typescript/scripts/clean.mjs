// Removes the folders named on the command line (a fresh build never ships a stale file).
import { rmSync } from "node:fs";

for (const dir of process.argv.slice(2)) rmSync(new URL(`../${dir}`, import.meta.url), { recursive: true, force: true });
