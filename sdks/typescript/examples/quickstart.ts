import { setTimeout as sleep } from "node:timers/promises";
import { runWorker } from "trio-pipe-worker";

await runWorker({
  url: process.env["TRIO_PIPE_URL"] ?? "ws://127.0.0.1:9876",
  handlers: {
    "word-count": ({ text }: { text: string }) => ({ words: text.split(/\s+/).filter(Boolean).length }),
    nap: async ({ ms }: { ms: number }, { signal }) => {
      await sleep(ms, undefined, { signal }); // Kill and timeoutMs abort the signal
      return { slept: ms };
    },
  },
  maxConcurrency: 8,
});
