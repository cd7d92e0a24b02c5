/* Keeps a counter in a global and reports it: in a fresh instance per task, every
 * task must see {"calls": 1}. A module instance reused across tasks would show 2, 3...
 * It also leaves a marker in a heap buffer that a reused instance would find. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int calls;
static char *scratch;

int main(void) {
    calls++;
    int dirty = scratch != NULL;
    if (!scratch) scratch = malloc(64);
    strcpy(scratch, "used");
    printf("{\"calls\":%d,\"dirty\":%s}\n", calls, dirty ? "true" : "false");
    return 0;
}
