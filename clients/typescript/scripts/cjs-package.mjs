// The package is "type": "module"; this marks dist/cjs as CommonJS so that Node (and
// TypeScript reading dist/cjs/*.d.ts) treat the require() build as what it is.
import { writeFileSync } from "node:fs";

writeFileSync(new URL("../dist/cjs/package.json", import.meta.url), '{\n  "type": "commonjs"\n}\n');
