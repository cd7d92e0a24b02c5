package io.triopipe.worker.protocol;

import java.util.Map;

/** A task's scheduling priority, lowest first. Workers may ignore it. */
public enum Priority {
    /** Below normal. */
    LOW("Low"),
    /** The default. */
    NORMAL("Normal"),
    /** Above normal. */
    HIGH("High"),
    /** The highest. */
    CRITICAL("Critical");

    private static final Map<String, Priority> SPELLINGS =
            WireEnums.spellings(values(), Priority::wireName);

    private final String wireName;

    Priority(String wireName) {
        this.wireName = wireName;
    }

    /**
     * The name written on the wire.
     *
     * @return the PascalCase name, e.g. {@code "High"}
     */
    public String wireName() {
        return wireName;
    }

    /**
     * The priority a wire name stands for, in any ASCII case ({@code "high"}, {@code "HIGH"}).
     *
     * @param name a name as received
     * @return the priority
     * @throws IllegalArgumentException if no priority has that name
     */
    public static Priority fromWire(String name) {
        return WireEnums.lookup(SPELLINGS, name, "priority");
    }
}
