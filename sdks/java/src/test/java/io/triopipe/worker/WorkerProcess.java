package io.triopipe.worker;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The SDK's conformance worker ({@code conformance-worker}, the program the conformance
 * kit runs) as a real process: signals are sent to it with {@code kill}. In stdio mode
 * this is the dispatcher's side of its pipes; over WebSocket its stdout is only watched
 * for its end. Its log (stderr) is kept.
 */
final class WorkerProcess extends Peer {
    private static final Path COMMAND = Path.of("conformance-worker").toAbsolutePath();

    private final Process process;
    private final OutputStream toWorker;
    private final ByteArrayOutputStream stderr = new ByteArrayOutputStream(); // guarded by itself
    private final CompletableFuture<Void> stdoutEnded = new CompletableFuture<>();

    /**
     * Starts the worker: over WebSocket to {@code url}, over stdio if it is {@code null}.
     *
     * @param env variables for the worker, beside the kit's ({@code TRIO_PIPE_WORKER_ID},
     *     a concurrency of 2, heartbeats every 100 ms)
     */
    WorkerProcess(String url, Map<String, String> env) throws IOException {
        this(url, env, true);
    }

    /**
     * @param readStdout false: nothing reads the worker's stdout but the test, through
     *     {@link #stdout()}
     */
    WorkerProcess(String url, Map<String, String> env, boolean readStdout) throws IOException {
        List<String> command = new ArrayList<>(List.of(COMMAND.toString()));
        if (url != null) {
            command.add(url);
        }
        ProcessBuilder builder = new ProcessBuilder(command);
        builder.environment().remove("TRIO_PIPE_URL");
        builder.environment().remove(Worker.DRAIN_TIMEOUT_ENV);
        builder.environment().put("TRIO_PIPE_WORKER_ID", "process-worker");
        builder.environment().put("TRIO_PIPE_MAX_CONCURRENCY", "2");
        builder.environment().put("TRIO_PIPE_HEARTBEAT_MS", "100");
        builder.environment().putAll(env);
        process = builder.start();
        toWorker = process.getOutputStream();
        if (readStdout) {
            daemon("worker-stdout", () -> read(process.getInputStream()));
        }
        daemon("worker-stderr", () -> collect(process.getErrorStream()));
    }

    /** Sends the signal {@code name} ({@code TERM}, {@code INT}) to the worker's JVM. */
    void signal(String name) throws IOException, InterruptedException {
        Process kill = new ProcessBuilder("kill", "-s", name, Long.toString(process.pid()))
                .inheritIO()
                .start();
        if (kill.waitFor() != 0) {
            throw new IOException("kill -s " + name + " failed");
        }
    }

    /** Its exit status, waiting up to {@link #WAIT}; fails if it is still running. */
    int exitStatus() throws InterruptedException {
        if (!process.waitFor(WAIT.toNanos(), TimeUnit.NANOSECONDS)) {
            throw new AssertionError("the worker did not exit within " + WAIT + "; stderr:\n" + stderr());
        }
        return process.exitValue();
    }

    /** Completes when the worker's stdout reaches its end. */
    CompletableFuture<Void> stdoutEnded() {
        return stdoutEnded;
    }

    /** The worker's stdout, for a test that reads it itself. */
    InputStream stdout() {
        return process.getInputStream();
    }

    /** What the worker wrote on stderr so far (its log). */
    String stderr() {
        synchronized (stderr) {
            return stderr.toString(StandardCharsets.UTF_8);
        }
    }

    /** Waits up to {@link #WAIT} until the worker's log holds {@code text}. */
    void awaitLog(String text) throws InterruptedException {
        long deadline = System.nanoTime() + WAIT.toNanos();
        synchronized (stderr) {
            while (!stderr.toString(StandardCharsets.UTF_8).contains(text)) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    throw new AssertionError("the log does not say '" + text + "':\n" + stderr());
                }
                TimeUnit.NANOSECONDS.timedWait(stderr, left);
            }
        }
    }

    @Override
    void sendFrame(String frame) {
        try {
            toWorker.write((frame + "\n").getBytes(StandardCharsets.UTF_8));
            toWorker.flush();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Kills the worker if it still runs. */
    @Override
    public void close() {
        process.destroyForcibly();
    }

    private void read(InputStream stdout) {
        LineReader lines = new LineReader(stdout, Transport.MAX_FRAME_SIZE);
        try {
            for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                deliver(line);
            }
        } catch (IOException e) {
            // the process is gone
        } finally {
            stdoutEnded.complete(null);
        }
    }

    private void collect(InputStream in) {
        byte[] buffer = new byte[4096];
        try {
            for (int n = in.read(buffer); n >= 0; n = in.read(buffer)) {
                synchronized (stderr) {
                    stderr.write(buffer, 0, n);
                    stderr.notifyAll();
                }
            }
        } catch (IOException e) {
            // the process is gone
        }
    }

    private static void daemon(String name, Runnable body) {
        Thread thread = new Thread(body, name);
        thread.setDaemon(true);
        thread.start();
    }
}
