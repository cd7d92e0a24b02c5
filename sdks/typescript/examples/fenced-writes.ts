import { runWorker, TaskFailure } from "trio-pipe-worker";
import type { TaskContext } from "trio-pipe-worker";

/** A ledger service that applies one charge per key and refuses writes from superseded tries. */
const LEDGER = process.env["LEDGER_URL"] ?? "http://127.0.0.1:8080";

/** Charges an order once, however many times its task runs. */
async function charge({ order, cents }: { order: number; cents: number }, { signal, task }: TaskContext) {
  const { idempotencyKey, attempt, epoch } = task.metadata;
  // One charge per key; a task submitted without one has its id, the same on every retry.
  const response = await fetch(`${LEDGER}/charges/${encodeURIComponent(idempotencyKey ?? task.id)}`, {
    method: "PUT",
    signal,
    headers: { "content-type": "application/json" },
    // The fencing token: the ledger keeps the greatest (epoch, attempt) it has seen for the charge,
    // compared epoch first, and refuses a write with a smaller one. (JSON leaves out what is undefined.)
    body: JSON.stringify({ order, cents, epoch, attempt }),
  });
  if (response.status === 409) throw new TaskFailure("SUPERSEDED", "a newer try of this charge was written");
  if (!response.ok) throw new Error(`the ledger answered ${response.status}`); // HANDLER_ERROR, retryable
  return { order, charged: cents };
}

await runWorker({ url: process.env["TRIO_PIPE_URL"] ?? "ws://127.0.0.1:9876", handlers: { charge } });
