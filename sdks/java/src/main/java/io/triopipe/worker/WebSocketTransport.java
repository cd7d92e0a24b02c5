package io.triopipe.worker;

import static java.lang.System.Logger.Level.WARNING;

import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpResponse;
import java.net.http.WebSocket;
import java.net.http.WebSocketHandshakeException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.cert.CertificateException;
import java.time.Duration;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import javax.net.ssl.SSLException;

/**
 * A connection over {@link java.net.http.WebSocket}: one protocol message per text
 * message, reassembled from its partial frames; frames are requested one at a time,
 * after the previous one was handed over; sends are chained, never overlapping.
 */
final class WebSocketTransport implements Transport, WebSocket.Listener {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");

    private static final int POLICY_VIOLATION = 1008;

    private final Duration timeout;
    private volatile String policyViolation;
    /** Completes when the connection is over: the dispatcher's Close, a failure, or {@link #abort}. */
    private final CompletableFuture<Void> closed = new CompletableFuture<>();
    private final StringBuilder message = new StringBuilder();
    private boolean oversized;
    private volatile Session session;
    private volatile WebSocket socket;
    private CompletableFuture<?> sending = CompletableFuture.completedFuture(null);

    private WebSocketTransport(Duration timeout) {
        this.timeout = timeout;
    }

    /**
     * Opens a connection; nothing is read before {@link #start}.
     *
     * @param token sent as {@code Authorization: Bearer <token>}; null for none
     * @param giveUp completes when the connection is no longer wanted
     * @throws HandshakeRefusedException if the dispatcher answers with an HTTP error
     * @throws IOException if the connection cannot be made within {@code timeout} (a
     *     failed TLS handshake says so), or {@code giveUp} completes first
     */
    static WebSocketTransport connect(
            HttpClient client, URI url, Duration timeout, String token, CompletableFuture<?> giveUp)
            throws IOException, InterruptedException {
        WebSocketTransport transport = new WebSocketTransport(timeout);
        WebSocket.Builder builder = client.newWebSocketBuilder().connectTimeout(timeout);
        if (token != null) {
            builder.header("Authorization", "Bearer " + token);
        }
        CompletableFuture<WebSocket> opening = builder.buildAsync(url, transport);
        try {
            CompletableFuture.anyOf(opening, giveUp).get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException e) {
            if (e.getCause() instanceof WebSocketHandshakeException refused) {
                HttpResponse<?> response = refused.getResponse();
                Object body = response.body();
                throw HandshakeRefusedException.of(
                        response.statusCode(),
                        body instanceof byte[] bytes
                                ? new String(bytes, StandardCharsets.UTF_8)
                                : body == null ? null : body.toString());
            }
            String tls = tlsFailure(e.getCause());
            if (tls != null) {
                int port = url.getPort() != -1 ? url.getPort() : 443;
                throw new IOException("TLS handshake with " + url.getHost() + ":" + port + " failed: " + tls, e);
            }
            throw new IOException(describe(e.getCause()), e.getCause());
        } catch (TimeoutException e) {
            opening.cancel(true);
            throw new IOException("no connection within " + timeout.toMillis() + " ms", e);
        }
        if (!opening.isDone()) {
            opening.cancel(true);
            throw new IOException("given up while connecting");
        }
        transport.socket = opening.join();
        return transport;
    }

    @Override
    public void start(Session session) {
        this.session = session;
        socket.request(1);
    }

    @Override
    public synchronized void send(String frame) {
        sending = sending.thenCompose(
                        done -> socket.sendText(frame, true).orTimeout(timeout.toNanos(), TimeUnit.NANOSECONDS))
                .whenComplete(this::checkSent);
    }

    @Override
    public void close() throws InterruptedException {
        CompletableFuture<?> closing;
        synchronized (this) {
            closing = sending.thenCompose(done -> closed.isDone()
                    ? closed
                    : socket.sendClose(WebSocket.NORMAL_CLOSURE, "").thenCompose(sent -> closed));
        }
        try {
            closing.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
        } catch (ExecutionException | TimeoutException e) {
            if (!closed.isDone()) { // else it ended first (the dispatcher's Close, an abort)
                LOG.log(WARNING, "could not close the connection cleanly: {0}", describe(e));
            }
        } finally {
            abort();
        }
    }

    @Override
    public void abort() {
        socket.abort();
        closed.complete(null); // a close() waiting for the dispatcher's Close returns
    }

    // -- WebSocket.Listener ---------------------------------------------------------

    @Override
    public void onOpen(WebSocket webSocket) {
        // Nothing is requested until start(): no frame arrives before the session exists.
    }

    @Override
    public CompletionStage<?> onText(WebSocket webSocket, CharSequence data, boolean last) {
        if (!oversized && message.length() + data.length() > MAX_FRAME_SIZE) {
            LOG.log(WARNING, "ignoring a message of more than {0} characters", MAX_FRAME_SIZE);
            oversized = true;
            message.setLength(0);
        }
        if (!oversized) {
            message.append(data);
        }
        if (last) {
            if (!oversized) {
                String frame = message.toString();
                message.setLength(0);
                session.onFrame(frame);
            }
            oversized = false;
        }
        webSocket.request(1);
        return null;
    }

    @Override
    public CompletionStage<?> onBinary(WebSocket webSocket, ByteBuffer data, boolean last) {
        if (last) {
            LOG.log(WARNING, "ignoring a binary message: the protocol is text only");
        }
        webSocket.request(1);
        return null;
    }

    /**
     * The reason of the dispatcher's close frame if it closed with code 1008 (policy
     * violation); null otherwise (not closed, closed otherwise).
     */
    String policyViolation() {
        return policyViolation;
    }

    @Override
    public CompletionStage<?> onClose(WebSocket webSocket, int statusCode, String reason) {
        if (statusCode == POLICY_VIOLATION) {
            policyViolation = reason.isEmpty() ? "no reason given" : reason;
        }
        closed.complete(null);
        String why = reason.isEmpty() ? "" : ": " + reason;
        // Nothing can be delivered after the dispatcher's Close, even during a shutdown.
        session.onBroken("the dispatcher closed the connection (code " + statusCode + why + ")");
        return null;
    }

    @Override
    public void onError(WebSocket webSocket, Throwable error) {
        closed.complete(null);
        session.onBroken("the connection failed: " + describe(error));
    }

    private void checkSent(Object ignored, Throwable error) {
        if (error != null) {
            session.onBroken("sending failed: " + describe(error));
        }
    }

    /** Why TLS failed, for people, if an {@link SSLException} is behind {@code error}; else null. */
    private static String tlsFailure(Throwable error) {
        Throwable cause = error;
        while (cause != null && !(cause instanceof SSLException)) {
            cause = cause.getCause();
        }
        if (cause == null) {
            return null;
        }
        String message = Objects.requireNonNullElse(cause.getMessage(), cause.getClass().getSimpleName());
        if (message.startsWith("PKIX path") || cause.getCause() instanceof CertificateException) {
            // "PKIX path building failed: ...: unable to find valid certification path to requested target"
            int detail = message.lastIndexOf(": ");
            return "certificate verify failed: " + (detail < 0 ? message : message.substring(detail + 2));
        }
        if (message.contains("certificate_required")) {
            return message + " (the server requires a client certificate)";
        }
        if (message.contains("fatal alert: bad_certificate")) {
            return message + " (the server refused the client certificate, or the lack of one)";
        }
        return message;
    }

    private static String describe(Throwable error) {
        Throwable cause = error;
        while ((cause instanceof ExecutionException || cause instanceof CompletionException)
                && cause.getCause() != null) {
            cause = cause.getCause();
        }
        if (cause instanceof TimeoutException) {
            return "timed out";
        }
        String message = cause.getMessage();
        return message == null
                ? cause.getClass().getSimpleName()
                : cause.getClass().getSimpleName() + ": " + message;
    }
}
