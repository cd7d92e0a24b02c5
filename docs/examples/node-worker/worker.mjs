// A trio_pipe worker in Node.js, written from docs/protocol.md alone.
// Usage: node worker.mjs ws://127.0.0.1:PORT [workerId]   (or env TRIO_PIPE_URL, WORKER_ID)
import WebSocket from "ws";

const url = process.argv[2] ?? process.env.TRIO_PIPE_URL;
const workerId = process.argv[3] ?? process.env.WORKER_ID ?? `node-${process.pid}`;
const supportedTasks = (process.env.SUPPORTED_TASKS ?? "echo,upper").split(",");
const maxConcurrency = 4;
const handlers = { echo: (p) => p, upper: (p) => ({ text: p.text.toUpperCase() }) };
const failed = (code, message, retryable) => ({ status: "Failed", error: { code, message, retryable } });

const ws = new WebSocket(url);
const send = (message) => ws.send(JSON.stringify(message));
let heartbeats;
let shutdown = false;

function run({ id, taskType, payload }) {
  const start = Date.now();
  let outcome;
  try {
    outcome = Object.hasOwn(handlers, taskType)
      ? { status: "Completed", payload: handlers[taskType](payload) }
      : failed("UNKNOWN_TASK_TYPE", `no handler for task type '${taskType}'`, false);
  } catch (err) {
    outcome = failed("HANDLER_ERROR", String(err), true);
  }
  send({ type: "TaskResult", result: { taskId: id, ...outcome, durationMs: Date.now() - start, workerId } });
}

// Handlers are synchronous: between two messages, no task is active.
const heartbeat = () => send({ type: "Heartbeat", payload: { workerId, activeTasks: 0, capacity: maxConcurrency, uptimeSeconds: Math.floor(process.uptime()) } });

ws.on("open", () => send({ type: "WorkerRegister", registration: { workerId, supportedTasks, maxConcurrency, language: "JavaScript" } }));
ws.on("message", (data) => {
  const message = JSON.parse(data.toString());
  if (message.type === "WorkerRegistered") heartbeats = setInterval(heartbeat, 1000);
  else if (message.type === "TaskDispatch") run(message.task);
  else if (message.type === "Shutdown") { shutdown = true; ws.close(1000); } // nothing is in flight
  // Kill needs nothing (a task is over before the next message is read); HeartbeatAck is ignored.
});
ws.on("close", () => { clearInterval(heartbeats); process.exit(shutdown ? 0 : 1); });
