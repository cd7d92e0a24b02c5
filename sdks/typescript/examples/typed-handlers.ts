import { defineHandler, runWorker, TaskFailure } from "trio-pipe-worker";

interface Fetch {
  url: string;
  maxBytes: number;
}

/** Checks the payload; what it throws fails the task with PARSE_ERROR, and the handler is not called. */
function parseFetch(payload: unknown): Fetch {
  const { url, maxBytes = 1_000_000 } = (payload ?? {}) as Partial<Fetch>;
  if (typeof url !== "string" || !URL.canParse(url)) throw new TypeError("url must be an absolute URL");
  if (typeof maxBytes !== "number") throw new TypeError("maxBytes must be a number");
  return { url, maxBytes };
}

const fetchSize = defineHandler(parseFetch, async ({ url, maxBytes }, { signal, task }) => {
  const response = await fetch(url, { signal }); // Kill, timeoutMs and shutdown abort the download
  if (response.status === 404) throw new TaskFailure("NOT_FOUND", `${url} does not exist`, { retryable: false });
  const bytes = (await response.arrayBuffer()).byteLength;
  if (bytes > maxBytes) throw new TaskFailure("TOO_LARGE", `${bytes} bytes`); // not retryable by default
  process.stderr.write(`[${task.metadata.traceId ?? task.id}] ${url}: ${bytes} bytes\n`);
  return { url, bytes }; // any other error thrown fails the task with HANDLER_ERROR, retryable
});

const stop = new AbortController();
process.once("SIGTERM", () => stop.abort()); // abort handlers, close the connection, return

await runWorker({
  url: "wss://dispatcher.example.org:9876",
  handlers: { "fetch-size": fetchSize },
  workerId: "fetcher-1",
  tags: ["eu-west"],
  reconnect: { maxDelayMs: 30_000 },
  signal: stop.signal,
});
