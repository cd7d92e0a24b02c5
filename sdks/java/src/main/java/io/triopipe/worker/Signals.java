package io.triopipe.worker;

import static java.lang.System.Logger.Level.DEBUG;
import static java.lang.System.Logger.Level.INFO;
import static java.lang.System.Logger.Level.WARNING;

import java.lang.invoke.MethodHandle;
import java.lang.invoke.MethodHandleProxies;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.MethodType;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.Map;
import java.util.OptionalInt;
import java.util.Set;

/**
 * SIGTERM and SIGINT for the runs that handle them ({@link Worker.Builder#handleSignals},
 * on by default). The JVM has one handler per signal, so this is process-wide: it is
 * installed when the first such run starts and the previous handlers are put back when
 * the last one ends, unless a signal came.
 *
 * <p>The first signal drains every run with its drain timeout, the second stops every
 * run at once (the tasks left are reported {@code Cancelled}), a third halts the JVM.
 * When the last run has ended, its thread exits the JVM: status 0 after SIGTERM, 130
 * after SIGINT (the first signal's).
 *
 * <p>Java has no public signal API: this uses {@code sun.misc.Signal} (module {@code
 * jdk.unsupported}, in every JDK since 9), through method handles because javac has no
 * way to silence its warning for that class. Where it is missing or the JVM keeps the
 * signals ({@code -Xrs}), the worker logs a warning and serves without.
 */
final class Signals {
    private static final System.Logger LOG = System.getLogger("io.triopipe.worker");
    private static final Map<String, Integer> EXIT_STATUS = Map.of("TERM", 0, "INT", 130);

    private static final Set<Run> RUNS = new LinkedHashSet<>(); // guarded by Signals.class
    private static final Map<String, Object> PREVIOUS = new LinkedHashMap<>(); // guarded by Signals.class
    private static String received; // the first signal, guarded by Signals.class
    private static int count; // guarded by Signals.class

    private Signals() {}

    /** Handles the signals for {@code run} from now on; drains it at once if a signal came. */
    static synchronized void enter(Run run) {
        if (RUNS.isEmpty() && received == null) {
            install();
        }
        RUNS.add(run);
        if (received != null) {
            run.drain("SIG" + received);
        }
    }

    /**
     * {@code run} has ended.
     *
     * @return the status to exit the JVM with: present when a signal came and this was
     *     the last run
     */
    static synchronized OptionalInt leave(Run run) {
        RUNS.remove(run);
        if (received == null) {
            if (RUNS.isEmpty()) {
                restore();
            }
            return OptionalInt.empty();
        }
        return RUNS.isEmpty() ? OptionalInt.of(EXIT_STATUS.get(received)) : OptionalInt.empty();
    }

    /** Runs on a thread the JVM starts for each signal. */
    private static synchronized void onSignal(String name) {
        count++;
        if (count == 1) {
            received = name;
            RUNS.forEach(run -> run.drain("SIG" + name));
        } else if (count == 2) {
            LOG.log(INFO, "SIG{0} again: stopping at once", name);
            RUNS.forEach(run -> run.drain(Duration.ZERO, "second signal, SIG" + name));
        } else {
            LOG.log(WARNING, "SIG{0} again: halting at once", name);
            Runtime.getRuntime().halt(EXIT_STATUS.get(received));
        }
    }

    private static void install() {
        MethodHandle onSignal;
        try {
            onSignal = MethodHandles.lookup()
                    .findStatic(Signals.class, "onSignal", MethodType.methodType(void.class, String.class));
        } catch (ReflectiveOperationException e) {
            throw new IllegalStateException(e); // a method of this class
        }
        for (String name : EXIT_STATUS.keySet()) {
            try {
                Object handler = SunMisc.handler(MethodHandles.insertArguments(onSignal, 0, name));
                PREVIOUS.put(name, SunMisc.handle(name, handler));
            } catch (Throwable e) { // the API is missing, or the JVM keeps the signal (-Xrs)
                LOG.log(WARNING, "cannot handle SIG{0}, the worker will not drain on it: {1}", name, e.toString());
            }
        }
        LOG.log(DEBUG, "SIGTERM and SIGINT drain the worker; a second signal stops it at once");
    }

    private static void restore() {
        PREVIOUS.forEach((name, previous) -> {
            try {
                SunMisc.handle(name, previous);
            } catch (Throwable e) {
                LOG.log(WARNING, "could not restore the handler of SIG{0}: {1}", name, e.toString());
            }
        });
        PREVIOUS.clear();
    }

    /** {@code sun.misc.Signal.handle} and {@code sun.misc.SignalHandler}, looked up at run time. */
    private static final class SunMisc {
        private static final Class<?> SIGNAL;
        private static final Class<?> HANDLER;
        private static final MethodHandle NEW_SIGNAL;
        private static final MethodHandle HANDLE;

        static {
            try {
                SIGNAL = Class.forName("sun.misc.Signal");
                HANDLER = Class.forName("sun.misc.SignalHandler");
                MethodHandles.Lookup lookup = MethodHandles.publicLookup();
                NEW_SIGNAL = lookup.findConstructor(SIGNAL, MethodType.methodType(void.class, String.class));
                HANDLE = lookup.findStatic(SIGNAL, "handle", MethodType.methodType(HANDLER, SIGNAL, HANDLER));
            } catch (ReflectiveOperationException e) {
                throw new ExceptionInInitializerError(e);
            }
        }

        /** A {@code SignalHandler} that runs {@code action} (no arguments), ignoring the signal object. */
        static Object handler(MethodHandle action) {
            return MethodHandleProxies.asInterfaceInstance(HANDLER, MethodHandles.dropArguments(action, 0, SIGNAL));
        }

        /** Installs {@code handler} for the signal {@code name}; returns the one it replaces. */
        static Object handle(String name, Object handler) throws Throwable {
            return HANDLE.invoke(NEW_SIGNAL.invoke(name), handler);
        }
    }
}
