/* Lennard-Jones molecular dynamics for Tessera (docs/science-apps.md, "WebAssembly apps").
 *
 * NVE velocity Verlet in reduced units (sigma = epsilon = mass = k_B = 1), a cubic periodic
 * box with the minimum image, and the truncated and shifted potential: U(r) = 4 (r^-12 - r^-6)
 * - U(2.5) for r < 2.5, zero beyond; forces are those of the plain truncated potential. The
 * particles start on an fcc lattice with velocities from splitmix64 (each component the sum of
 * twelve uniforms minus six), zero total momentum, scaled to the target temperature. During
 * equilibration the velocities are scaled back to the target temperature every RESCALE_EVERY
 * steps; production is pure NVE and averages the potential energy per particle, the kinetic
 * temperature, the virial pressure and the total energy.
 *
 * Only + - * / and sqrt are used, in a fixed order, so every IEEE machine gives the same
 * bits (compile without -ffast-math and with -ffp-contract=off). The module reads "input"
 * ("key value" lines), writes "output" (JSON, numbers with %.17g) and "progress", and every
 * checkpoint_steps steps writes "checkpoint" (the whole state, binary) and exits with 75 so
 * the client runs it again; on start it resumes from "checkpoint" when there is one.
 *
 * Built natively it works on DIR/input, DIR/output, ... for `lennard_jones DIR`, else in the
 * folder it runs in (a native app's slot). Built with -DTESSERA_NATIVE_APP (the native app
 * versions, docs/apps.md "Native apps") it keeps running after each checkpoint, as a native
 * app does; without it (the speed comparison of bench.wasm) it exits 75 like the module.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CUTOFF 2.5
#define RESCALE_EVERY 10
#define EXIT_CHECKPOINT 75
/* Pair interactions between checkpoints: a couple of seconds of work under wasmtime. */
#define CHECKPOINT_PAIRS 100000000ULL
#define MAX_CELLS 10
static const char MAGIC[8] = {'T', 'L', 'J', 'C', 'K', 'P', 'T', '1'};

typedef struct {
    int64_t n_cells, equilibration_steps, production_steps, checkpoint_steps;
    uint64_t seed;
    double density, temperature, dt;
} Input;

/* Everything a run needs to continue exactly where the last one stopped. */
typedef struct {
    uint64_t step, rng;
    /* potential energy and virial (sum of r.F) of the current positions */
    double potential, virial;
    /* total energy per particle at the start and at the end of production */
    double energy_start, energy_end;
    /* production sums of: u, u^2, T, T^2, P, P^2, e, e^2 (per-particle energies) */
    double sums[8];
} Scalars;

typedef struct {
    Input in;
    int64_t n;
    double box, half, volume;
    Scalars s;
    double *x, *y, *z, *vx, *vy, *vz, *fx, *fy, *fz;
} System;

#ifdef __wasi__
#define BASE_DIR "" /* the slot is preopened at / */
#else
#define BASE_DIR "." /* a native app runs in its slot */
#endif
static char base_dir[4096];

static const char *path(const char *name, char *buffer, size_t size) {
    snprintf(buffer, size, "%s/%s", base_dir, name);
    return buffer;
}

static void fail(const char *message, const char *detail) {
    fprintf(stderr, "lennard_jones: %s%s\n", message, detail);
    exit(2);
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A normal-ish deviate from integers alone: twelve uniforms on [0, 1), minus six. */
static double gaussian(uint64_t *state) {
    double sum = 0.0;
    for (int k = 0; k < 12; k++) sum += (double)(splitmix64(state) >> 11) * (1.0 / 9007199254740992.0);
    return sum - 6.0;
}

static double square_root(double v) {
    return __builtin_sqrt(v); /* one IEEE instruction (f64.sqrt), correctly rounded */
}

/* v^(1/3) by Newton's method from above, stopping when it no longer decreases. */
static double cube_root(double v) {
    double x = v > 1.0 ? v : 1.0;
    for (int k = 0; k < 200; k++) {
        double next = (2.0 * x + v / (x * x)) / 3.0;
        if (!(next < x)) break;
        x = next;
    }
    return x;
}

static int is_finite(double v) {
    return v == v && v <= 1.7976931348623157e308 && v >= -1.7976931348623157e308;
}

static void parse_line(Input *in, const char *key, const char *value, unsigned *seen) {
    static const char *const keys[] = {"n_cells", "density", "temperature", "dt",
        "equilibration_steps", "production_steps", "seed", "checkpoint_steps"};
    char *end = NULL;
    for (unsigned k = 0; k < 8; k++) {
        if (strcmp(key, keys[k]) != 0) continue;
        if (k == 1 || k == 2 || k == 3) {
            double d = strtod(value, &end);
            if (k == 1) in->density = d; else if (k == 2) in->temperature = d; else in->dt = d;
        } else {
            unsigned long long u = strtoull(value, &end, 10);
            if (k == 0) in->n_cells = (int64_t)u;
            else if (k == 4) in->equilibration_steps = (int64_t)u;
            else if (k == 5) in->production_steps = (int64_t)u;
            else if (k == 6) in->seed = u;
            else in->checkpoint_steps = (int64_t)u;
        }
        if (end == value || *end != '\0') fail("input: bad value for ", key);
        *seen |= 1u << k;
        return;
    }
    fail("input: unknown key ", key);
}

static char *read_file(const char *name, size_t *size) {
    char where[4200];
    FILE *file = fopen(path(name, where, sizeof where), "rb");
    if (!file) return NULL;
    size_t capacity = 4096, used = 0;
    char *data = malloc(capacity + 1);
    size_t got;
    while (data && (got = fread(data + used, 1, capacity - used, file)) > 0) {
        used += got;
        if (used == capacity) data = realloc(data, (capacity *= 2) + 1);
    }
    fclose(file);
    if (!data) fail("out of memory reading ", name);
    data[used] = '\0';
    *size = used;
    return data;
}

static Input read_input(void) {
    size_t size;
    char *text = read_file("input", &size);
    if (!text) fail("cannot read ", "input");
    Input in = {0};
    unsigned seen = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *space = strchr(line, ' ');
        if (!space) fail("input: a line without a value: ", line);
        *space = '\0';
        parse_line(&in, line, space + 1, &seen);
    }
    free(text);
    if ((seen & 0x7f) != 0x7f) fail("input: ", "n_cells, density, temperature, dt, "
        "equilibration_steps, production_steps and seed are all needed");
    if (in.n_cells < 1 || in.n_cells > MAX_CELLS || !(in.density > 0.0) || !(in.temperature > 0.0)
        || !(in.dt > 0.0) || in.production_steps < 1 || in.equilibration_steps < 0)
        fail("input: ", "a value is out of range");
    return in;
}

static void allocate(System *sys) {
    int64_t n = sys->n;
    double **arrays[9] = {&sys->x, &sys->y, &sys->z, &sys->vx, &sys->vy, &sys->vz,
                          &sys->fx, &sys->fy, &sys->fz};
    for (int k = 0; k < 9; k++) {
        *arrays[k] = calloc((size_t)n, sizeof(double));
        if (!*arrays[k]) fail("out of memory", "");
    }
}

static void geometry(System *sys) {
    int64_t cells = sys->in.n_cells;
    sys->n = 4 * cells * cells * cells;
    sys->box = (double)cells * cube_root(4.0 / sys->in.density);
    sys->half = 0.5 * sys->box;
    sys->volume = sys->box * sys->box * sys->box;
    if (sys->box < 2.0 * CUTOFF) fail("input: ", "the box is smaller than twice the cutoff");
    if (sys->in.checkpoint_steps == 0) {
        uint64_t pairs = (uint64_t)(sys->n * (sys->n - 1) / 2);
        uint64_t steps = CHECKPOINT_PAIRS / pairs;
        sys->in.checkpoint_steps = steps > 0 ? (int64_t)steps : 1;
    }
}

/* Forces, potential energy and virial of the current positions, pair by pair in order. */
static void compute_forces(System *sys) {
    const double rc2 = CUTOFF * CUTOFF, inv_rc2 = 1.0 / rc2;
    const double inv_rc6 = inv_rc2 * inv_rc2 * inv_rc2;
    const double shift = 4.0 * inv_rc6 * (inv_rc6 - 1.0);
    const double box = sys->box, half = sys->half;
    double potential = 0.0, virial = 0.0;
    int64_t n = sys->n;
    for (int64_t i = 0; i < n; i++) sys->fx[i] = sys->fy[i] = sys->fz[i] = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double xi = sys->x[i], yi = sys->y[i], zi = sys->z[i];
        double fxi = 0.0, fyi = 0.0, fzi = 0.0;
        for (int64_t j = i + 1; j < n; j++) {
            double dx = xi - sys->x[j], dy = yi - sys->y[j], dz = zi - sys->z[j];
            if (dx > half) dx -= box; else if (dx < -half) dx += box;
            if (dy > half) dy -= box; else if (dy < -half) dy += box;
            if (dz > half) dz -= box; else if (dz < -half) dz += box;
            double r2 = dx * dx + dy * dy + dz * dz;
            if (r2 >= rc2) continue;
            double inv2 = 1.0 / r2;
            double inv6 = inv2 * inv2 * inv2;
            double w = 24.0 * inv6 * (2.0 * inv6 - 1.0); /* r . F */
            double f = w * inv2;
            potential += 4.0 * inv6 * (inv6 - 1.0) - shift;
            virial += w;
            fxi += f * dx; fyi += f * dy; fzi += f * dz;
            sys->fx[j] -= f * dx; sys->fy[j] -= f * dy; sys->fz[j] -= f * dz;
        }
        sys->fx[i] += fxi; sys->fy[i] += fyi; sys->fz[i] += fzi;
    }
    sys->s.potential = potential;
    sys->s.virial = virial;
}

static double kinetic(const System *sys) {
    double sum = 0.0;
    for (int64_t i = 0; i < sys->n; i++)
        sum += sys->vx[i] * sys->vx[i] + sys->vy[i] * sys->vy[i] + sys->vz[i] * sys->vz[i];
    return 0.5 * sum;
}

static double kinetic_temperature(const System *sys, double kinetic_energy) {
    return 2.0 * kinetic_energy / (double)(3 * sys->n - 3);
}

static void scale_to_temperature(System *sys) {
    double now = kinetic_temperature(sys, kinetic(sys));
    double factor = square_root(sys->in.temperature / now);
    for (int64_t i = 0; i < sys->n; i++) {
        sys->vx[i] *= factor; sys->vy[i] *= factor; sys->vz[i] *= factor;
    }
}

/* fcc lattice, offset by a quarter cell; velocities without total momentum at the target T. */
static void initialize(System *sys) {
    static const double basis[4][3] = {{0, 0, 0}, {0.5, 0.5, 0}, {0.5, 0, 0.5}, {0, 0.5, 0.5}};
    double cell = sys->box / (double)sys->in.n_cells;
    int64_t cells = sys->in.n_cells, p = 0;
    for (int64_t ix = 0; ix < cells; ix++)
        for (int64_t iy = 0; iy < cells; iy++)
            for (int64_t iz = 0; iz < cells; iz++)
                for (int b = 0; b < 4; b++, p++) {
                    sys->x[p] = ((double)ix + basis[b][0] + 0.25) * cell;
                    sys->y[p] = ((double)iy + basis[b][1] + 0.25) * cell;
                    sys->z[p] = ((double)iz + basis[b][2] + 0.25) * cell;
                }
    sys->s.rng = sys->in.seed;
    double px = 0.0, py = 0.0, pz = 0.0;
    for (int64_t i = 0; i < sys->n; i++) {
        sys->vx[i] = gaussian(&sys->s.rng); sys->vy[i] = gaussian(&sys->s.rng);
        sys->vz[i] = gaussian(&sys->s.rng);
        px += sys->vx[i]; py += sys->vy[i]; pz += sys->vz[i];
    }
    px /= (double)sys->n; py /= (double)sys->n; pz /= (double)sys->n;
    for (int64_t i = 0; i < sys->n; i++) {
        sys->vx[i] -= px; sys->vy[i] -= py; sys->vz[i] -= pz;
    }
    scale_to_temperature(sys);
    compute_forces(sys);
}

static double wrap(double v, double box) {
    if (v >= box) return v - box;
    if (v < 0.0) return v + box;
    return v;
}

/* One velocity Verlet step. */
static void verlet(System *sys) {
    const double dt = sys->in.dt, half_dt = 0.5 * sys->in.dt;
    for (int64_t i = 0; i < sys->n; i++) {
        sys->vx[i] += half_dt * sys->fx[i]; sys->vy[i] += half_dt * sys->fy[i];
        sys->vz[i] += half_dt * sys->fz[i];
        sys->x[i] = wrap(sys->x[i] + dt * sys->vx[i], sys->box);
        sys->y[i] = wrap(sys->y[i] + dt * sys->vy[i], sys->box);
        sys->z[i] = wrap(sys->z[i] + dt * sys->vz[i], sys->box);
    }
    compute_forces(sys);
    for (int64_t i = 0; i < sys->n; i++) {
        sys->vx[i] += half_dt * sys->fx[i]; sys->vy[i] += half_dt * sys->fy[i];
        sys->vz[i] += half_dt * sys->fz[i];
    }
}

/* Adds this production step's potential energy, temperature, pressure and energy to the sums. */
static void accumulate(System *sys) {
    double k = kinetic(sys), n = (double)sys->n;
    double values[4] = {
        sys->s.potential / n,
        kinetic_temperature(sys, k),
        (2.0 * k + sys->s.virial) / (3.0 * sys->volume),
        (k + sys->s.potential) / n,
    };
    for (int q = 0; q < 4; q++) {
        sys->s.sums[2 * q] += values[q];
        sys->s.sums[2 * q + 1] += values[q] * values[q];
    }
    sys->s.energy_end = values[3];
}

/* Writes name.tmp, then renames it over name: a killed run leaves the old file whole. */
static void write_atomic(const char *name, const void *const *parts, const size_t *sizes, int count) {
    char temporary[4200], final_path[4200], tmp_name[64];
    snprintf(tmp_name, sizeof tmp_name, "%s.tmp", name);
    FILE *file = fopen(path(tmp_name, temporary, sizeof temporary), "wb");
    if (!file) fail("cannot write ", tmp_name);
    for (int k = 0; k < count; k++)
        if (sizes[k] && fwrite(parts[k], 1, sizes[k], file) != sizes[k]) fail("cannot write ", tmp_name);
    if (fclose(file) != 0) fail("cannot write ", tmp_name);
    if (rename(temporary, path(name, final_path, sizeof final_path)) != 0) fail("cannot rename ", tmp_name);
}

static void write_text(const char *name, const char *text) {
    const void *parts[1] = {text};
    size_t sizes[1] = {strlen(text)};
    write_atomic(name, parts, sizes, 1);
}

static void write_progress(const System *sys) {
    char text[32];
    uint64_t total = (uint64_t)(sys->in.equilibration_steps + sys->in.production_steps);
    snprintf(text, sizeof text, "%.4f", (double)sys->s.step / (double)total);
    write_text("progress", text);
}

/* The checkpoint: magic, particle count, the scalars, then x y z vx vy vz fx fy fz. */
static void write_checkpoint(const System *sys) {
    const void *parts[12] = {MAGIC, &sys->n, &sys->s, sys->x, sys->y, sys->z,
                             sys->vx, sys->vy, sys->vz, sys->fx, sys->fy, sys->fz};
    size_t sizes[12] = {sizeof MAGIC, sizeof sys->n, sizeof sys->s};
    for (int k = 3; k < 12; k++) sizes[k] = (size_t)sys->n * sizeof(double);
    write_atomic("checkpoint", parts, sizes, 12);
    write_progress(sys);
}

static int read_checkpoint(System *sys) {
    size_t size, expected = sizeof MAGIC + sizeof sys->n + sizeof sys->s + 9 * (size_t)sys->n * sizeof(double);
    char *data = read_file("checkpoint", &size);
    if (!data) return 0;
    int64_t n;
    if (size != expected || memcmp(data, MAGIC, sizeof MAGIC) != 0) fail("checkpoint: ", "not ours");
    memcpy(&n, data + sizeof MAGIC, sizeof n);
    if (n != sys->n) fail("checkpoint: ", "another particle count");
    const char *at = data + sizeof MAGIC + sizeof n;
    memcpy(&sys->s, at, sizeof sys->s);
    at += sizeof sys->s;
    double *arrays[9] = {sys->x, sys->y, sys->z, sys->vx, sys->vy, sys->vz, sys->fx, sys->fy, sys->fz};
    for (int k = 0; k < 9; k++, at += (size_t)n * sizeof(double)) memcpy(arrays[k], at, (size_t)n * sizeof(double));
    free(data);
    return 1;
}

static int put_number(char *out, size_t size, const char *key, double value, const char *after) {
    if (!is_finite(value)) return snprintf(out, size, "\"%s\": null%s", key, after);
    return snprintf(out, size, "\"%s\": %.17g%s", key, value, after);
}

/* The output: one JSON object, keys in sorted order. */
static void write_output(const System *sys) {
    const double *s = sys->s.sums, steps = (double)sys->in.production_steps;
    double mean[4], deviation[4];
    for (int q = 0; q < 4; q++) {
        mean[q] = s[2 * q] / steps;
        double variance = s[2 * q + 1] / steps - mean[q] * mean[q];
        deviation[q] = square_root(variance > 0.0 ? variance : 0.0);
    }
    char text[4096];
    size_t used = (size_t)snprintf(text, sizeof text, "{\"box_length\": %.17g, \"cutoff\": %.17g, ",
                                   sys->box, CUTOFF);
    used += (size_t)snprintf(text + used, sizeof text - used, "\"density\": %.17g, \"dt\": %.17g, ",
                             sys->in.density, sys->in.dt);
    used += (size_t)put_number(text + used, sizeof text - used, "energy_drift",
                               sys->s.energy_end - sys->s.energy_start, ", ");
    used += (size_t)snprintf(text + used, sizeof text - used, "\"equilibration_steps\": %lld, ",
                             (long long)sys->in.equilibration_steps);
    used += (size_t)put_number(text + used, sizeof text - used, "kinetic_temperature", mean[1], ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "kinetic_temperature_std", deviation[1], ", ");
    used += (size_t)snprintf(text + used, sizeof text - used, "\"n_cells\": %lld, \"n_particles\": %lld, ",
                             (long long)sys->in.n_cells, (long long)sys->n);
    used += (size_t)put_number(text + used, sizeof text - used, "potential_energy", mean[0], ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "potential_energy_std", deviation[0], ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "pressure", mean[2], ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "pressure_std", deviation[2], ", ");
    used += (size_t)snprintf(text + used, sizeof text - used, "\"production_steps\": %lld, \"seed\": %llu, ",
                             (long long)sys->in.production_steps, (unsigned long long)sys->in.seed);
    used += (size_t)put_number(text + used, sizeof text - used, "temperature", sys->in.temperature, ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "total_energy", mean[3], ", ");
    used += (size_t)put_number(text + used, sizeof text - used, "total_energy_std", deviation[3], "}\n");
    if (used >= sizeof text) fail("output: ", "too long");
    write_text("output", text);
}

int main(int argc, char **argv) {
    snprintf(base_dir, sizeof base_dir, "%s", argc > 1 ? argv[1] : BASE_DIR);
    System sys;
    memset(&sys, 0, sizeof sys);
    sys.in = read_input();
    geometry(&sys);
    allocate(&sys);
    if (!read_checkpoint(&sys)) initialize(&sys);
    uint64_t equilibration = (uint64_t)sys.in.equilibration_steps;
    uint64_t total = equilibration + (uint64_t)sys.in.production_steps;
    uint64_t every = (uint64_t)sys.in.checkpoint_steps;
    while (sys.s.step < total) {
        if (sys.s.step == equilibration) sys.s.energy_start = (kinetic(&sys) + sys.s.potential) / (double)sys.n;
        verlet(&sys);
        sys.s.step++;
        if (sys.s.step <= equilibration) {
            if (sys.s.step % RESCALE_EVERY == 0) scale_to_temperature(&sys);
        } else {
            accumulate(&sys);
        }
        if (sys.s.step % every == 0 && sys.s.step < total) {
            write_checkpoint(&sys);
#ifndef TESSERA_NATIVE_APP
            return EXIT_CHECKPOINT;
#endif
        }
    }
    write_output(&sys);
    write_text("progress", "1");
    return 0;
}
