import { once } from "node:events";
import { startWorker } from "trio-pipe-worker";

// startWorker installs no signal handler: this program decides when the worker drains.
const worker = startWorker({
  url: process.env["TRIO_PIPE_URL"] ?? "ws://127.0.0.1:9876",
  handlers: { echo: (payload) => payload },
  drainTimeoutMs: 20_000,
});
await Promise.race([once(process, "SIGTERM"), worker.done]);
await worker.drain(); // no new tasks; those in flight get 20 s; the rest are cancelled; close 1000
// ... now close what the handlers used (database pools, files), then return: exit status 0
