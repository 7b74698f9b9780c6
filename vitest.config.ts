import { defineConfig } from "vitest/config";

// Fast suites: unit tests next to the code (*.test.ts) and store suites in test/.
// Slow suites (real QEMU, real processes, the WAN emulator) are tagged by file name:
// *.slow.test.ts. `npm test` runs everything; `npm run test:fast` skips the slow ones.
const fastOnly = Boolean(process.env.NOVACRON_FAST_ONLY);

export default defineConfig({
  test: {
    include: ["src/**/*.test.ts", "test/**/*.test.ts"],
    exclude: ["node_modules/**", "dist/**", ...(fastOnly ? ["**/*.slow.test.ts"] : [])],
    testTimeout: 60_000,
    hookTimeout: 180_000,
    // QEMU under TCG is CPU-bound and this machine has 2 cores: test files run one at a
    // time so timing-sensitive suites do not starve each other.
    fileParallelism: false,
    reporters: process.env.CI ? ["verbose"] : ["default"],
  },
});
