/**
 * The trio_pipe wire protocol: its nine messages, the types they carry, and the
 * {@link io.triopipe.worker.protocol.Codec} that reads and writes them.
 *
 * <p>Decoding is liberal (enums in any case, defaults for missing optional fields,
 * {@code task_id}/{@code worker_id} aliases, unknown members ignored) and encoding is
 * exact (compact JSON, every field, camelCase names, PascalCase enums), as
 * docs/protocol.md specifies. Every value type validates its components, so whatever
 * can be constructed can be encoded.
 */
package io.triopipe.worker.protocol;
