import { serveStdio } from "trio-pipe-worker";

// stdout carries the protocol: log to stderr, never with console.log.
await serveStdio({
  handlers: { shout: ({ text }: { text: string }) => `${text.toUpperCase()}!` },
  maxConcurrency: 4, // the same number as spawn_stdio's max_concurrency
});
