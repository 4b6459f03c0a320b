/* A native Tessera app that follows the contract of docs/apps.md ("Native apps"), for the tests.
 *
 * Input: "<steps> <ms per step>". Each step keeps every one of TESSERA_CORES threads (1 when
 * unset) busy for <ms per step> milliseconds of its own CPU time, then adds the step's term to
 * the total, checkpoints (write a temporary file, rename it onto TESSERA_CHECKPOINT) and writes
 * the fraction done to TESSERA_PROGRESS. At start it resumes from the checkpoint when there is
 * one. The output is one JSON line: the total (which depends on the input alone), how often it
 * started, the step it resumed at, and the cores and OpenMP threads it was given.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long burn_ms;

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static double thread_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    return now.tv_sec + now.tv_nsec / 1e9;
}

static void *burn(void *sink) {
    double until = thread_seconds() + burn_ms / 1000.0;
    volatile unsigned long long x = 88172645463325252ULL;
    while (thread_seconds() < until) {
        for (int i = 0; i < 10000; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
        }
    }
    *(unsigned long long *)sink = x;
    return NULL;
}

static void write_file(const char *path, const char *text) {
    char temporary[4096];
    snprintf(temporary, sizeof temporary, "%s.tmp", path);
    FILE *out = fopen(temporary, "w");
    if (!out || fputs(text, out) < 0 || fclose(out) != 0 || rename(temporary, path) != 0) {
        perror(path);
        exit(2);
    }
}

int main(void) {
    const char *checkpoint = env_or("TESSERA_CHECKPOINT", "checkpoint");
    long steps, step = 0, starts = 0;
    unsigned long long total = 0;
    FILE *in = fopen(env_or("TESSERA_INPUT", "input"), "r");
    if (!in || fscanf(in, "%ld %ld", &steps, &burn_ms) != 2) {
        fprintf(stderr, "cannot read the input\n");
        return 3;
    }
    fclose(in);
    FILE *saved = fopen(checkpoint, "r");
    if (saved) {
        if (fscanf(saved, "%ld %llu %ld", &step, &total, &starts) != 3) {
            fprintf(stderr, "the checkpoint is damaged\n");
            return 4;
        }
        fclose(saved);
    }
    starts++;
    long resumed_at = step;
    int cores = atoi(env_or("TESSERA_CORES", "1"));
    if (cores < 1 || cores > 64) {
        fprintf(stderr, "TESSERA_CORES %d is out of range\n", cores);
        return 5;
    }
    pthread_t threads[64];
    unsigned long long sinks[64];
    char text[256];
    for (; step < steps; step++) {
        for (int t = 1; t < cores; t++) {
            if (pthread_create(&threads[t], NULL, burn, &sinks[t]) != 0) {
                fprintf(stderr, "cannot start thread %d\n", t);
                return 6;
            }
        }
        burn(&sinks[0]);
        for (int t = 1; t < cores; t++) pthread_join(threads[t], NULL);
        total += (unsigned long long)(step + 1) * (step + 1);
        snprintf(text, sizeof text, "%ld %llu %ld\n", step + 1, total, starts);
        write_file(checkpoint, text);
        snprintf(text, sizeof text, "%.6f\n", (double)(step + 1) / steps);
        write_file(env_or("TESSERA_PROGRESS", "progress"), text);
    }
    printf("done after %ld steps\n", steps);
    snprintf(text, sizeof text,
             "{\"total\": %llu, \"starts\": %ld, \"resumed_at\": %ld, \"cores\": %d, \"omp\": \"%s\"}\n",
             total, starts, resumed_at, cores, env_or("OMP_NUM_THREADS", ""));
    write_file(env_or("TESSERA_OUTPUT", "output"), text);
    return 0;
}
