package io.triopipe.worker;

/**
 * How a session (one connection, or one stdio run) ended.
 *
 * @param shutdown the dispatcher sent {@code Shutdown}: do not reconnect
 * @param reason why it ended, for the log
 */
record SessionEnd(boolean shutdown, String reason) {}
