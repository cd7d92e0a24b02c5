package io.triopipe.worker;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import io.triopipe.worker.protocol.Shutdown;
import io.triopipe.worker.protocol.WorkerRegister;
import io.triopipe.worker.protocol.WorkerRegistered;
import java.io.IOException;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogRecord;
import java.util.logging.Logger;
import javax.net.ssl.SSLContext;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** Credentials: the token in the handshake, refusals that end the worker, and TLS. */
class AuthTest {
    private static final String TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJl";
    private static final Path TLS = Path.of("..", "..", "spec", "tls");

    private TestWebSocketServer server;

    @AfterEach
    void stop() throws IOException {
        if (server != null) {
            server.close();
        }
    }

    private static Worker.Builder worker() {
        return Worker.builder()
                .workerId("java-auth.1")
                .handleSignals(false)
                .backoff(Duration.ofMillis(5), Duration.ofMillis(20))
                .handle("echo", JsonNode.class, (ctx, payload) -> payload);
    }

    /** Runs the worker on a thread; the future says how the run ended. */
    private static CompletableFuture<Void> run(Worker worker, URI url) {
        return CompletableFuture.runAsync(() -> {
            try {
                worker.runWebSocket(url);
            } catch (WorkerConnectionException | InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
    }

    /** How the run ended: the exception it threw (a test of a failure). */
    private static Throwable failure(CompletableFuture<Void> run) throws Exception {
        ExecutionException failed = assertThrows(
                ExecutionException.class, () -> run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS));
        Throwable cause = failed.getCause();
        return cause instanceof IllegalStateException && cause.getCause() != null ? cause.getCause() : cause;
    }

    /** Serves one connection: registers the worker, then shuts it down. */
    private void registerThenShutDown() throws IOException, InterruptedException {
        TestWebSocketServer.Connection connection = server.accept();
        WorkerRegister register = connection.await(WorkerRegister.class, m -> true);
        connection.send(new WorkerRegistered(register.registration().workerId()));
        connection.send(new Shutdown(true));
    }

    private static String authorization(String request) {
        return request.lines()
                .filter(line -> line.regionMatches(true, 0, "authorization:", 0, 14))
                .map(line -> line.substring(14).strip())
                .findFirst()
                .orElse(null);
    }

    @Test
    void theTokenGoesInTheAuthorizationHeaderNeverTheUrl() throws Exception {
        server = new TestWebSocketServer(0);
        URI url = server.url().resolve("/workers");
        CompletableFuture<Void> run = run(worker().token(TOKEN).build(), url);
        registerThenShutDown();
        run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        String request = server.requests().get(0);
        assertEquals("Bearer " + TOKEN, authorization(request));
        assertTrue(request.startsWith("GET /workers HTTP/1.1\r\n"), request);
    }

    @Test
    void withoutATokenNoHeaderIsSent() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> run = run(worker().build(), server.url());
        registerThenShutDown();
        run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        // (unless TRIO_PIPE_TOKEN is set where the tests run)
        assertEquals(Worker.Builder.tokenFromEnv(System.getenv(Worker.TOKEN_ENV)) == null
                        ? null
                        : "Bearer " + System.getenv(Worker.TOKEN_ENV),
                authorization(server.requests().get(0)));
    }

    @Test
    void theTokenComesFromTheEnvironmentWhenSetAndNotEmpty() {
        assertEquals(TOKEN, Worker.Builder.tokenFromEnv(TOKEN));
        assertNull(Worker.Builder.tokenFromEnv(""));
        assertNull(Worker.Builder.tokenFromEnv(null));
        IllegalStateException bad =
                assertThrows(IllegalStateException.class, () -> Worker.Builder.tokenFromEnv("two words"));
        assertTrue(bad.getMessage().startsWith("TRIO_PIPE_TOKEN must be printable ASCII"), bad.getMessage());
    }

    @Test
    void aTokenThatCannotBeAHeaderIsRefusedWithoutShowingIt() {
        for (String token : List.of("", "two words", "line\nbreak", "café")) {
            IllegalArgumentException bad =
                    assertThrows(IllegalArgumentException.class, () -> worker().token(token));
            assertTrue(token.isEmpty() || !bad.getMessage().contains(token), bad.getMessage());
        }
    }

    @Test
    void theTokenIsNeverLogged() throws Exception {
        List<String> logged = new CopyOnWriteArrayList<>();
        Handler recorder = new Handler() {
            @Override
            public void publish(LogRecord record) {
                logged.add(record.getMessage() + " " + List.of(
                        record.getParameters() == null ? new Object[0] : record.getParameters()));
            }

            @Override
            public void flush() {}

            @Override
            public void close() {}
        };
        Logger logger = Logger.getLogger("io.triopipe.worker");
        Level level = logger.getLevel();
        logger.setLevel(Level.ALL);
        logger.addHandler(recorder);
        try {
            server = new TestWebSocketServer(0);
            CompletableFuture<Void> run = run(worker().token(TOKEN).build(), server.url());
            registerThenShutDown();
            run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
            CompletableFuture<Void> refused = run(worker().token(TOKEN).build(), server.url());
            server.refuse(401, "token revoked");
            assertInstanceOf(HandshakeRefusedException.class, failure(refused));
        } finally {
            logger.removeHandler(recorder);
            logger.setLevel(level);
        }
        assertFalse(logged.isEmpty());
        assertTrue(logged.stream().noneMatch(line -> line.contains(TOKEN)), logged.toString());
    }

    @Test
    void a401Or403EndsTheRunAtOnceWithoutReconnecting() throws Exception {
        for (int status : new int[] {401, 403}) {
            server = new TestWebSocketServer(0);
            CompletableFuture<Void> run = run(worker().token(TOKEN).build(), server.url()); // may reconnect
            server.refuse(status, "token expired\n");
            HandshakeRefusedException refused = assertInstanceOf(HandshakeRefusedException.class, failure(run));
            assertEquals(status, refused.status());
            assertEquals("token expired", refused.reason());
            assertEquals("the dispatcher refused the connection (HTTP " + status + "): token expired",
                    refused.getMessage());
            assertEquals(1, server.requests().size());
            server.close();
        }
    }

    @Test
    void anotherRefusalIsRetried() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> run = run(worker().token(TOKEN).build(), server.url());
        server.refuse(503, "at the connection limit");
        server.refuse(503, "at the connection limit");
        registerThenShutDown();
        run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        assertEquals(3, server.requests().size());
    }

    @Test
    void a1008BeforeWorkerRegisteredEndsTheRun() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> run = run(worker().build(), server.url());
        TestWebSocketServer.Connection connection = server.accept();
        connection.await(WorkerRegister.class, m -> true);
        connection.closeWith(1008, "task type 'echo' is outside the token's scope");
        RegistrationRefusedException refused =
                assertInstanceOf(RegistrationRefusedException.class, failure(run));
        assertEquals("task type 'echo' is outside the token's scope", refused.reason());
        assertEquals("the dispatcher refused the registration: task type 'echo' is outside the token's scope",
                refused.getMessage());
        assertEquals(1, server.requests().size());
    }

    @Test
    void a1008OnceRegisteredIsALostConnection() throws Exception {
        server = new TestWebSocketServer(0);
        CompletableFuture<Void> run = run(worker().build(), server.url());
        TestWebSocketServer.Connection connection = server.accept();
        WorkerRegister register = connection.await(WorkerRegister.class, m -> true);
        connection.send(new WorkerRegistered(register.registration().workerId()));
        connection.closeWith(1008, "invalid TaskResult");
        registerThenShutDown();
        run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        assertEquals(2, server.requests().size());
    }

    private static SSLContext serverTls() throws Exception {
        return PemTls.sslContext(TLS.resolve("ca.pem"), TLS.resolve("server.pem"), TLS.resolve("server.key"));
    }

    @Test
    void mutualTlsAcceptsTheWorkerWithItsCertificate() throws Exception {
        server = TestWebSocketServer.tls(serverTls(), true);
        SSLContext client =
                PemTls.sslContext(TLS.resolve("ca.pem"), TLS.resolve("client.pem"), TLS.resolve("client.key"));
        CompletableFuture<Void> run = run(worker().sslContext(client).token(TOKEN).build(), server.url());
        registerThenShutDown();
        run.get(Peer.WAIT.toSeconds(), TimeUnit.SECONDS);
        assertEquals("Bearer " + TOKEN, authorization(server.requests().get(0)));
    }

    /**
     * Fails the TLS handshake of every connection until {@code run} ends (the JDK's
     * HTTP client opens a second connection when the first one fails this way).
     */
    private void failHandshakesUntil(CompletableFuture<Void> run) {
        CompletableFuture.runAsync(() -> {
            while (!run.isDone()) {
                assertThrows(IOException.class, server::accept);
            }
        });
    }

    @Test
    void withoutAClientCertificateTheRefusalIsATlsFailure() throws Exception {
        server = TestWebSocketServer.tls(serverTls(), true);
        SSLContext client = PemTls.sslContext(TLS.resolve("ca.pem"), null, null);
        CompletableFuture<Void> run = run(worker().sslContext(client).reconnect(false).build(), server.url());
        failHandshakesUntil(run);
        Throwable failed = failure(run);
        assertInstanceOf(WorkerConnectionException.class, failed);
        assertEquals("worker java-auth.1: could not connect to " + server.url() + ": TLS handshake with 127.0.0.1:"
                        + server.port() + " failed: Received fatal alert: bad_certificate (the server refused the "
                        + "client certificate, or the lack of one)",
                failed.getMessage());
    }

    @Test
    void anUntrustedServerCertificateIsReportedAsOne() throws Exception {
        server = TestWebSocketServer.tls(serverTls(), false);
        CompletableFuture<Void> run = run(worker().reconnect(false).build(), server.url()); // the JDK's CAs
        failHandshakesUntil(run);
        Throwable failed = failure(run);
        assertEquals("worker java-auth.1: could not connect to " + server.url() + ": TLS handshake with 127.0.0.1:"
                        + server.port() + " failed: certificate verify failed: "
                        + "unable to find valid certification path to requested target",
                failed.getMessage());
    }

    @Test
    void anSslContextIsForWssOnly() throws Exception {
        Worker worker = worker().sslContext(SSLContext.getDefault()).build();
        assertThrows(IllegalArgumentException.class, () -> worker.runWebSocket(URI.create("ws://127.0.0.1:1/")));
    }

    @Test
    void pemFilesThatCannotBeUsedAreRefused() {
        assertThrows(IOException.class, () -> PemTls.sslContext(Path.of("/nonexistent/ca.pem"), null, null));
        assertThrows(IOException.class, () -> PemTls.sslContext(TLS.resolve("client.key"), null, null));
        assertThrows(IOException.class, () -> PemTls.sslContext(null, TLS.resolve("client.pem"), null));
        assertThrows(IllegalArgumentException.class, () -> PemTls.sslContext(null, null, TLS.resolve("client.key")));
    }
}
