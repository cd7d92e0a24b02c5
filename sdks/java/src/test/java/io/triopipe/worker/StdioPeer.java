package io.triopipe.worker;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.nio.channels.Channels;
import java.nio.channels.Pipe;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

/** A worker served over a pair of OS pipes, as by a dispatcher that spawned it. */
final class StdioPeer extends Peer {
    private final OutputStream toWorker;
    private final CompletableFuture<Void> served = new CompletableFuture<>();

    StdioPeer(Worker worker) throws IOException {
        Pipe input = Pipe.open();
        Pipe output = Pipe.open();
        toWorker = Channels.newOutputStream(input.sink());
        InputStream fromWorker = Channels.newInputStream(output.source());
        OutputStream workerOut = Channels.newOutputStream(output.sink());
        Thread serving = new Thread(
                () -> {
                    try {
                        worker.serveStdio(Channels.newInputStream(input.source()), workerOut);
                        served.complete(null);
                    } catch (Throwable e) {
                        served.completeExceptionally(e);
                    } finally {
                        close(workerOut);
                    }
                },
                "stdio-worker");
        serving.setDaemon(true);
        serving.start();
        Thread reading = new Thread(() -> read(fromWorker), "stdio-peer");
        reading.setDaemon(true);
        reading.start();
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

    /** Closes the worker's stdin: end of file. */
    void closeInput() {
        close(toWorker);
    }

    /** Waits until {@code serveStdio} has returned; fails if it threw or is still serving. */
    void awaitReturn() throws InterruptedException, ExecutionException, TimeoutException {
        served.get(WAIT.toNanos(), TimeUnit.NANOSECONDS);
    }

    boolean hasReturned() {
        return served.isDone();
    }

    @Override
    public void close() {
        closeInput();
    }

    private void read(InputStream fromWorker) {
        LineReader lines = new LineReader(fromWorker, Transport.MAX_FRAME_SIZE);
        try {
            for (String line = lines.readLine(); line != null; line = lines.readLine()) {
                deliver(line);
            }
        } catch (IOException e) {
            // the worker's stdout was closed
        }
    }

    private static void close(OutputStream stream) {
        try {
            stream.close();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
