package io.triopipe.worker;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.URI;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.Arrays;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLServerSocket;

/**
 * A minimal RFC 6455 server on 127.0.0.1, for tests: accepts one connection at a time
 * and hands it over as a {@link Peer} that can also send fragmented messages and close
 * the connection with a code; records every handshake's head, can refuse a handshake
 * with an HTTP error, and can listen over TLS.
 */
final class TestWebSocketServer implements AutoCloseable {
    private static final String GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    private static final Pattern KEY = Pattern.compile("(?im)^sec-websocket-key:\\s*(\\S+)\\s*$");

    private final ServerSocket server;
    private final String scheme;
    /** The head (request line and headers) of every opening handshake received, in order. */
    private final List<String> requests = new CopyOnWriteArrayList<>();

    /** Listens on {@code port}, or on a free port if it is 0. */
    TestWebSocketServer(int port) throws IOException {
        this(new ServerSocket(), "ws");
        listen(port);
    }

    private TestWebSocketServer(ServerSocket server, String scheme) {
        this.server = server;
        this.scheme = scheme;
    }

    /**
     * Listens for {@code wss://} connections on a free port, with {@code context}'s
     * certificate; {@code needClientAuth} requires a client certificate that {@code
     * context} trusts.
     */
    static TestWebSocketServer tls(SSLContext context, boolean needClientAuth) throws IOException {
        SSLServerSocket socket = (SSLServerSocket) context.getServerSocketFactory().createServerSocket();
        socket.setNeedClientAuth(needClientAuth);
        TestWebSocketServer server = new TestWebSocketServer(socket, "wss");
        server.listen(0);
        return server;
    }

    private void listen(int port) throws IOException {
        server.setReuseAddress(true);
        server.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), port));
        server.setSoTimeout((int) Peer.WAIT.toMillis());
    }

    int port() {
        return server.getLocalPort();
    }

    URI url() {
        return URI.create(scheme + "://127.0.0.1:" + port() + "/");
    }

    /** The heads of the opening handshakes received so far. */
    List<String> requests() {
        return requests;
    }

    /** Accepts the next connection and refuses its opening handshake with an HTTP error. */
    void refuse(int status, String body) throws IOException {
        try (Socket socket = server.accept()) {
            requests.add(readHeaders(socket.getInputStream()));
            byte[] content = body.getBytes(StandardCharsets.UTF_8);
            String head = "HTTP/1.1 " + status + " Refused\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    + "Content-Length: " + content.length + "\r\nConnection: close\r\n\r\n";
            OutputStream out = socket.getOutputStream();
            out.write(head.getBytes(StandardCharsets.US_ASCII));
            out.write(content);
            out.flush();
        }
    }

    /** Accepts the next connection and completes its opening handshake. */
    Connection accept() throws IOException {
        Socket socket = server.accept();
        InputStream in = socket.getInputStream();
        String request;
        try {
            request = readHeaders(in); // over TLS, the TLS handshake first
        } catch (IOException e) {
            socket.close();
            throw e;
        }
        requests.add(request);
        Matcher key = KEY.matcher(request);
        if (!key.find()) {
            socket.close();
            throw new IOException("not a WebSocket handshake: " + request);
        }
        String response = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + "Sec-WebSocket-Accept: " + accept(key.group(1)) + "\r\n\r\n";
        OutputStream out = socket.getOutputStream();
        out.write(response.getBytes(StandardCharsets.US_ASCII));
        out.flush();
        return new Connection(socket, in, out);
    }

    /** Stops listening; accepted connections stay open. */
    @Override
    public void close() throws IOException {
        server.close();
    }

    private static String readHeaders(InputStream in) throws IOException {
        ByteArrayOutputStream headers = new ByteArrayOutputStream();
        while (!headers.toString(StandardCharsets.US_ASCII).endsWith("\r\n\r\n")) {
            int b = in.read();
            if (b < 0) {
                throw new IOException("connection closed during the handshake");
            }
            headers.write(b);
        }
        return headers.toString(StandardCharsets.US_ASCII);
    }

    private static String accept(String key) {
        try {
            byte[] digest = MessageDigest.getInstance("SHA-1").digest((key + GUID).getBytes(StandardCharsets.US_ASCII));
            return Base64.getEncoder().encodeToString(digest);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** One accepted connection: text messages in and out, pings answered. */
    static final class Connection extends Peer {
        private static final int CONTINUATION = 0x0;
        private static final int TEXT = 0x1;
        private static final int CLOSE = 0x8;
        private static final int PING = 0x9;
        private static final int PONG = 0xA;

        private final Socket socket;
        private final InputStream in;
        private final OutputStream out;
        private final CompletableFuture<Integer> closeCode = new CompletableFuture<>();
        private volatile boolean answerClose = true;

        private Connection(Socket socket, InputStream in, OutputStream out) {
            this.socket = socket;
            this.in = in;
            this.out = out;
            Thread reader = new Thread(this::read, "websocket-peer");
            reader.setDaemon(true);
            reader.start();
        }

        @Override
        void sendFrame(String text) {
            writeFrame(true, TEXT, text.getBytes(StandardCharsets.UTF_8));
        }

        /** Sends one text message as {@code pieces} frames (a first one and continuations). */
        void sendFragmented(String text, int pieces) {
            byte[] bytes = text.getBytes(StandardCharsets.UTF_8);
            int size = (bytes.length + pieces - 1) / pieces;
            for (int i = 0; i < pieces; i++) {
                int from = Math.min(bytes.length, i * size);
                int to = Math.min(bytes.length, from + size);
                byte[] piece = Arrays.copyOfRange(bytes, from, to);
                writeFrame(i == pieces - 1, i == 0 ? TEXT : CONTINUATION, piece);
            }
        }

        /** Sends a Close frame with {@code code}, then drops the connection. */
        void closeWith(int code) {
            closeWith(code, "");
        }

        /** Sends a Close frame with {@code code} and {@code reason}, then drops the connection. */
        void closeWith(int code, String reason) {
            byte[] text = reason.getBytes(StandardCharsets.UTF_8);
            writeFrame(
                    true,
                    CLOSE,
                    ByteBuffer.allocate(2 + text.length).putShort((short) code).put(text).array());
            close();
        }

        /** From now on, leaves the worker's Close frame unanswered (a dispatcher that hangs). */
        void ignoreClose() {
            answerClose = false;
        }

        /** The code of the worker's Close frame, once it arrives. */
        CompletableFuture<Integer> closeCode() {
            return closeCode;
        }

        @Override
        public void close() {
            try {
                socket.close();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }

        private void read() {
            ByteArrayOutputStream message = new ByteArrayOutputStream();
            try {
                while (true) {
                    int first = in.read();
                    if (first < 0) {
                        return;
                    }
                    boolean fin = (first & 0x80) != 0;
                    int opcode = first & 0x0F;
                    byte[] payload = readPayload();
                    switch (opcode) {
                        case TEXT, CONTINUATION -> {
                            message.write(payload);
                            if (fin) {
                                deliver(message.toString(StandardCharsets.UTF_8));
                                message.reset();
                            }
                        }
                        case PING -> writeFrame(true, PONG, payload);
                        case CLOSE -> {
                            int code = payload.length >= 2
                                    ? ByteBuffer.wrap(payload).getShort() & 0xFFFF
                                    : 1005;
                            closeCode.complete(code);
                            if (answerClose) {
                                writeFrame(true, CLOSE, payload);
                                close();
                                return;
                            }
                        }
                        default -> {} // pong, binary: not used by the worker
                    }
                }
            } catch (IOException e) {
                closeCode.completeExceptionally(e);
            } finally {
                closeCode.completeExceptionally(new IOException("connection ended without Close"));
            }
        }

        private byte[] readPayload() throws IOException {
            int second = in.read();
            long length = second & 0x7F;
            if (length == 126) {
                length = ByteBuffer.wrap(in.readNBytes(2)).getShort() & 0xFFFF;
            } else if (length == 127) {
                length = ByteBuffer.wrap(in.readNBytes(8)).getLong();
            }
            byte[] mask = (second & 0x80) != 0 ? in.readNBytes(4) : new byte[4];
            byte[] payload = in.readNBytes((int) length);
            for (int i = 0; i < payload.length; i++) {
                payload[i] ^= mask[i % 4];
            }
            return payload;
        }

        private synchronized void writeFrame(boolean fin, int opcode, byte[] payload) {
            try {
                out.write((fin ? 0x80 : 0) | opcode);
                if (payload.length < 126) {
                    out.write(payload.length);
                } else if (payload.length <= 0xFFFF) {
                    out.write(126);
                    out.write(ByteBuffer.allocate(2)
                            .putShort((short) payload.length)
                            .array());
                } else {
                    out.write(127);
                    out.write(ByteBuffer.allocate(8).putLong(payload.length).array());
                }
                out.write(payload);
                out.flush();
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
        }
    }
}
