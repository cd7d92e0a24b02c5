/** Where the worker's own log goes: never stdout, which belongs to the protocol in stdio mode. */

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

/** What the worker logs with. `console` fits, except in stdio mode (its `info` writes to stdout). */
export interface Logger {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3, silent: 4 };

/**
 * A logger writing `trio-pipe-worker <level>: <message>` lines to stderr, from
 * `level` up. The default level is `TRIO_PIPE_LOG_LEVEL` from the environment,
 * else `"info"`.
 */
export function stderrLogger(level: LogLevel = defaultLevel()): Logger {
  const at =
    (name: Exclude<LogLevel, "silent">) =>
    (message: string): void => {
      if (RANK[name] >= RANK[level]) process.stderr.write(`trio-pipe-worker ${name}: ${message}\n`);
    };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

function defaultLevel(): LogLevel {
  const level = process.env["TRIO_PIPE_LOG_LEVEL"]?.toLowerCase();
  return level !== undefined && level in RANK ? (level as LogLevel) : "info";
}
