package io.triopipe.worker;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/** A {@link TaskHandler} with its payload type: JSON in, JSON out. */
record TypedHandler<I>(Class<I> payloadType, TaskHandler<? super I, ?> handler) {
    /**
     * Binds the payload, runs the handler and writes its result as JSON.
     *
     * @throws TaskFailure with {@link ErrorCodes#PARSE_ERROR} if the payload does not
     *     bind or the result is not JSON
     * @throws Exception whatever the handler throws
     */
    JsonNode run(ObjectMapper json, TaskContext context, JsonNode payload) throws Exception {
        Object result = handler.handle(context, bind(json, payload));
        try {
            return json.valueToTree(result);
        } catch (IllegalArgumentException e) {
            throw new TaskFailure(ErrorCodes.PARSE_ERROR, "result payload is not JSON: " + e.getMessage(), false);
        }
    }

    private I bind(ObjectMapper json, JsonNode payload) {
        if (payloadType.isInstance(payload) && JsonNode.class.isAssignableFrom(payloadType)) {
            return payloadType.cast(payload); // the payload as received
        }
        try {
            return json.treeToValue(payload, payloadType);
        } catch (JsonProcessingException | IllegalArgumentException e) {
            String reason = e instanceof JsonProcessingException j ? j.getOriginalMessage() : e.getMessage();
            throw new TaskFailure(
                    ErrorCodes.PARSE_ERROR,
                    "payload does not match " + payloadType.getSimpleName() + ": " + reason,
                    false);
        }
    }
}
