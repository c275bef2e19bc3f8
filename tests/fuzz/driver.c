/*
 * driver.c -- a plain main() for one fuzz target without libFuzzer: runs
 * LLVMFuzzerTestOneInput on every file named on the command line (a folder
 * stands for the files in it), printing each name first.  `make
 * fuzz-driver` builds one per target as build/fuzz-driver/<target>, which
 * is handy under gdb or valgrind.  Modelled on zstd's
 * tests/fuzz/regression_driver.c.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "%s: read failed\n", path);
        fclose(f);
        free(buf);
        return 1;
    }
    fclose(f);
    fprintf(stderr, "%s\n", path);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **names;
            int n = scandir(argv[i], &names, NULL, alphasort);
            for (int k = 0; k < n; k++) {
                if (names[k]->d_name[0] != '.') {
                    char p[4096];
                    snprintf(p, sizeof p, "%s/%s", argv[i], names[k]->d_name);
                    bad |= run_file(p);
                }
                free(names[k]);
            }
            free(names);
        } else {
            bad |= run_file(argv[i]);
        }
    }
    return bad;
}
