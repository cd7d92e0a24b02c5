package io.triopipe.worker.protocol;

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
     * The priority a wire name stands for, matched ignoring case and underscores.
     *
     * @param name a name as received
     * @return the priority
     * @throws IllegalArgumentException if no priority has that name
     */
    public static Priority fromWire(String name) {
        return WireEnums.lookup(values(), Priority::wireName, name, "priority");
    }
}
