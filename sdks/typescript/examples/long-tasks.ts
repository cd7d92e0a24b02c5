import { setTimeout as sleep } from "node:timers/promises";
import { runWorker } from "trio-pipe-worker";

/** Stands in for real work on one page: about a second each. */
async function renderPage(page: number, signal: AbortSignal): Promise<void> {
  await sleep(1_000 + page, undefined, { signal });
}

await runWorker({
  url: process.env["TRIO_PIPE_URL"] ?? "ws://127.0.0.1:9876",
  handlers: {
    render: async ({ pages }: { pages: number }, { signal, progress, extendDeadline }) => {
      for (let page = 0; page < pages; page += 1) {
        progress(page / pages, `page ${page + 1} of ${pages}`);
        extendDeadline(30_000); // alive: let my deadline be 30 s from now, if the task type allows it
        await renderPage(page, signal);
      }
      return { pages };
    },
    fetch: async ({ url }: { url: string }, { signal }) => (await fetch(url, { signal })).status,
  },
  maxConcurrency: 50,
  maxConcurrencyByType: { render: 2 }, // at most 2 renders at once, beside up to 48 fetches
  drainTimeoutMs: 60_000, // on SIGTERM, the tasks in flight get a minute to finish
});
