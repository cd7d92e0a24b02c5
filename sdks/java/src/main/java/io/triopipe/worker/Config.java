package io.triopipe.worker;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import javax.net.ssl.SSLContext;

/** A worker's validated settings, shared by all its sessions. */
record Config(
        String workerId,
        int maxConcurrency,
        Map<String, Integer> maxConcurrencyByType,
        Duration heartbeatInterval,
        List<String> tags,
        boolean reconnect,
        Duration backoffInitial,
        Duration backoffMax,
        Duration connectTimeout,
        Duration drainTimeout,
        boolean handleSignals,
        String token,
        SSLContext sslContext,
        Map<String, TypedHandler<?>> handlers,
        ObjectMapper json) {

    /** The implementation language sent in {@code WorkerRegister}. */
    static final String LANGUAGE = "Java";
}
