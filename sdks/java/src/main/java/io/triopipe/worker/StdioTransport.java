package io.triopipe.worker;

import static java.lang.System.Logger.Level.WARNING;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Newline-delimited JSON: frames are read from {@code in} by a reader thread and
 * written to {@code out}, in order, by a writer thread. Blank lines are skipped.
 */
final class StdioTransport implements Transport {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");

    private final InputStream in;
    private final OutputStream out;
    private final Duration timeout;
    private final ExecutorService writer = Executors.newSingleThreadExecutor(WorkerThreads.daemon("trio-pipe-stdout"));
    private volatile Session session;
    private volatile boolean broken;

    StdioTransport(InputStream in, OutputStream out, Duration timeout) {
        this.in = in;
        this.out = out;
        this.timeout = timeout;
    }

    @Override
    public void start(Session session) {
        this.session = session;
        Thread reader = WorkerThreads.daemon("trio-pipe-stdin").newThread(this::read);
        reader.start();
    }

    @Override
    public void send(String frame) {
        writer.execute(() -> write(frame));
    }

    @Override
    public void close() throws InterruptedException {
        writer.shutdown();
        if (!writer.awaitTermination(timeout.toNanos(), TimeUnit.NANOSECONDS)) {
            LOG.log(WARNING, "could not write the last results within {0} ms", timeout.toMillis());
            writer.shutdownNow();
        }
    }

    @Override
    public void abort() {
        writer.shutdownNow();
    }

    private void read() {
        LineReader lines = new LineReader(in, MAX_FRAME_SIZE);
        try {
            for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                if (!line.isBlank()) {
                    session.onFrame(line);
                }
            }
            session.onInputClosed("stdin reached end of file");
        } catch (IOException e) {
            session.onInputClosed("reading stdin failed: " + e.getMessage());
        }
    }

    private void write(String frame) {
        if (broken) {
            return;
        }
        try {
            out.write((frame + "\n").getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            broken = true;
            session.onBroken("writing to stdout failed: " + e.getMessage());
        }
    }
}
