/* Reports what the sandbox lets it see: its environment, whether it can read
 * /data/hello.txt (a preopened directory, if any) and /etc/hostname (never), and
 * whether it can create /data/written.txt (only in a writable preopen). */
#include <stdio.h>
#include <string.h>

extern char **environ;

static void put_string(const char *text) {
    putchar('"');
    for (; *text; text++) {
        unsigned char ch = (unsigned char)*text;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void put_file(const char *path) {
    char buffer[256];
    FILE *file = fopen(path, "r");
    if (!file) {
        fputs("null", stdout);
        return;
    }
    size_t n = fread(buffer, 1, sizeof buffer - 1, file);
    buffer[n] = '\0';
    fclose(file);
    put_string(buffer);
}

int main(void) {
    fputs("{\"env\":{", stdout);
    for (char **entry = environ; *entry; entry++) {
        char name[256];
        const char *equals = strchr(*entry, '=');
        size_t length = equals ? (size_t)(equals - *entry) : strlen(*entry);
        if (length >= sizeof name) length = sizeof name - 1;
        memcpy(name, *entry, length);
        name[length] = '\0';
        if (entry != environ) putchar(',');
        put_string(name);
        putchar(':');
        put_string(equals ? equals + 1 : "");
    }
    fputs("},\"data\":", stdout);
    put_file("/data/hello.txt");
    fputs(",\"hostname\":", stdout);
    put_file("/etc/hostname");
    FILE *created = fopen("/data/written.txt", "w");
    if (created) fclose(created);
    printf(",\"wrote\":%s}\n", created ? "true" : "false");
    return 0;
}
