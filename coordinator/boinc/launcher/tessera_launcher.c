/* tessera_launcher: runs a Tessera app under a stock BOINC client (docs/boinc.md).
 *
 * The client starts this program as an app version's main program, in the slot folder, with the
 * version's and the task's files copied there. It runs the real app (argv[1], else ./tessera_app)
 * under the Tessera app contract (a clean environment, exit 75 = "checkpointed, run me again")
 * and speaks the client's side of BOINC's app API for it, which a plain program cannot:
 *
 *  - Shared memory (api_version >= 6): the client makes the file "boinc_mmap_file" in the slot,
 *    sizeof(SHARED_MEM) = 8 channels of 1024 bytes (lib/shmem.h MMAPPED_FILE_NAME, lib/app_ipc.h
 *    SHARED_MEM). A channel holds a message while buf[0] != 0, its text from buf+1; the receiver
 *    clears buf[0], a sender writes only into an empty channel (lib/app_ipc.cpp MSG_CHANNEL).
 *    No file: standalone mode, the app just runs (as BOINC's own API does).
 *  - process_control_request: <suspend/> and <resume/> stop and continue the app's process group;
 *    <quit/> kills it and exits 0 without a finish file, so the client restarts the task later
 *    from its checkpoint; <abort/> kills it and exits 194, EXIT_ABORTED_BY_CLIENT
 *    (lib/error_numbers.h), as api/boinc_api.cpp parallel_master() does for its worker.
 *  - heartbeat: the client sends "<heartbeat/>..." each second. With none for 60 s (BOINC's API
 *    gives up after 30), or once the client's pid from init_data.xml is gone, the client died:
 *    kill the app and exit 0. TESSERA_LAUNCHER_HEARTBEAT_SECONDS shortens the 60 s (for tests).
 *  - app_status, each second when the channel is free: CPU time, CPU time at the last checkpoint
 *    and fraction done, in the order boinc_report_app_status_aux() writes them. The client takes
 *    a changed checkpoint_cpu_time as "the task checkpointed", so it moves only when the app's
 *    checkpoint file changes. Earlier episodes' CPU comes from init_data.xml's wu_cpu_time.
 *  - Success: boinc_finish_called holding "0\n" (boinc_finish()); without it the client takes
 *    exit 0 for a crash and restarts the task. Failure: the app's exit code (128 + signal).
 *
 * The app's stdout and stderr go to stderr.txt, which the client puts into the task's report.
 * C11 + POSIX, for Linux and macOS; built by coordinator/boinc/launcher/__init__.py.
 */
#ifdef _WIN32
#error "tessera_launcher is for Linux and macOS; Windows needs its own launcher"
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

enum { CONTROL_REQUEST, CONTROL_REPLY, GRAPHICS_REQUEST, GRAPHICS_REPLY,
       HEARTBEAT, APP_STATUS, TRICKLE_UP, TRICKLE_DOWN, CHANNELS };
#define CHANNEL_SIZE 1024
#define SHMEM_SIZE (CHANNELS * CHANNEL_SIZE)
#define EXIT_CHECKPOINT 75
#define MAX_RUNS 10000
#define EXIT_ABORTED_BY_CLIENT 194
#define TICK_NS 100000000L /* messages are read 10 times a second, as BOINC's API does */

static volatile char *shm;           /* NULL: standalone */
static pid_t child;                  /* the running app, leader of its own process group */
static volatile sig_atomic_t stop_signal;
static double cpu_done;              /* CPU seconds of earlier episodes and of ended runs */
static double cpu_reported;          /* what we last said: reported CPU never goes down */
static double checkpoint_cpu;
static double fraction;
static char slot[PATH_MAX];

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void say(const char *what) { fprintf(stderr, "tessera_launcher: %s\n", what); }

/* Takes the message out of a channel (MSG_CHANNEL::get_msg). */
static bool receive(int channel, char text[CHANNEL_SIZE]) {
    volatile char *buf = shm ? shm + channel * CHANNEL_SIZE : NULL;
    if (!buf || !buf[0]) return false;
    atomic_thread_fence(memory_order_acquire);
    int i = 0;
    for (; i < CHANNEL_SIZE - 2 && buf[1 + i]; i++) text[i] = buf[1 + i];
    text[i] = 0;
    atomic_thread_fence(memory_order_release);
    buf[0] = 0;
    return true;
}

/* Puts a message into an empty channel (MSG_CHANNEL::send_msg), or over an unread one. */
static bool send_message(int channel, const char *text, bool overwrite) {
    volatile char *buf = shm ? shm + channel * CHANNEL_SIZE : NULL;
    if (!buf || (buf[0] && !overwrite)) return false;
    int i = 0;
    for (; i < CHANNEL_SIZE - 2 && text[i]; i++) buf[1 + i] = text[i];
    buf[1 + i] = 0;
    atomic_thread_fence(memory_order_release); /* the text is whole before the flag is set */
    buf[0] = 1;
    return true;
}

static void map_shared_memory(void) {
    int fd = open("boinc_mmap_file", O_RDWR);
    if (fd < 0) { /* standalone: run by hand, or by a client that made no mmap file */
        if (access("init_data.xml", F_OK) == 0)
            say("no boinc_mmap_file (api_version < 6?): running standalone, no suspend");
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size >= SHMEM_SIZE) {
        void *p = mmap(NULL, SHMEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) shm = p;
    }
    if (!shm) say("boinc_mmap_file is too small or cannot be mapped: running standalone");
    close(fd);
}

/* The CPU time of the running app's main process (its threads included), 0 where unknown. */
static double running_cpu(void) {
#ifdef __linux__
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)child);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *p = strrchr(text, ')'); /* the command name may hold spaces and parentheses */
    unsigned long long utime, stime;
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                     &utime, &stime) != 2)
        return 0;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
#else
    return 0; /* macOS: counted when each run ends (wait4), which is what the client keeps */
#endif
}

static double cpu_time(void) {
    double cpu = cpu_done + (child > 0 ? running_cpu() : 0);
    if (cpu > cpu_reported) cpu_reported = cpu;
    return cpu_reported;
}

/* The checkpoint counts as new when its mtime, inode or size changes (apps rename onto it). */
static void check_checkpoint(bool remember_only) {
    static struct stat last;
    static bool have_last;
    struct stat st;
    if (stat("checkpoint", &st) != 0) return;
#ifdef __APPLE__
    long nsec = st.st_mtimespec.tv_nsec, last_nsec = last.st_mtimespec.tv_nsec;
#else
    long nsec = st.st_mtim.tv_nsec, last_nsec = last.st_mtim.tv_nsec;
#endif
    bool changed = !have_last || st.st_mtime != last.st_mtime || nsec != last_nsec ||
                   st.st_ino != last.st_ino || st.st_size != last.st_size;
    if (changed && !remember_only) checkpoint_cpu = cpu_time();
    last = st;
    have_last = true;
}

/* The app's fraction done; a missing, partial or nonsense file keeps the last good value. */
static void read_progress(void) {
    char text[64];
    FILE *f = fopen("progress", "r");
    if (!f) return;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    char *end;
    double value = strtod(text, &end);
    if (end == text || !isfinite(value)) return;
    fraction = value < 0 ? 0 : value > 1 ? 1 : value;
}

static void send_status(double fraction_done, bool overwrite) {
    char text[256];
    double cpu = cpu_time();
    snprintf(text, sizeof text,
             "<current_cpu_time>%e</current_cpu_time>\n"
             "<checkpoint_cpu_time>%e</checkpoint_cpu_time>\n"
             "<fraction_done>%e</fraction_done>\n",
             cpu, checkpoint_cpu, fraction_done);
    send_message(APP_STATUS, text, overwrite);
}

/* init_data.xml's number in <tag>, or 0: only the few scalars we need, no XML parser. */
static double init_data(const char *tag) {
    static char xml[65536];
    static bool read_once;
    if (!read_once) {
        FILE *f = fopen("init_data.xml", "r");
        if (f) {
            xml[fread(xml, 1, sizeof xml - 1, f)] = 0;
            fclose(f);
        }
        read_once = true;
    }
    const char *p = strstr(xml, tag);
    return p ? strtod(p + strlen(tag), NULL) : 0;
}

static void kill_app(void) {
    if (child <= 0) return;
    kill(-child, SIGKILL); /* the whole group, stopped or not */
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    child = 0;
}

static _Noreturn void stop(int code, const char *why) {
    kill_app();
    if (why) say(why);
    exit(code);
}

static void on_signal(int sig) { stop_signal = sig; }

static pid_t start_app(const char *path, char **argv, char **env) {
    pid_t parent = getpid(), pid = fork();
    if (pid < 0) stop(1, "cannot fork to start the app");
    if (pid == 0) {
        setpgid(0, 0); /* its own group: suspend and kill reach every process it starts */
#ifdef __linux__
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the app never outlives a launcher killed hard */
        if (getppid() != parent) _exit(1);
#else
        (void)parent;
#endif
        dup2(STDERR_FILENO, STDOUT_FILENO); /* stdout too goes to stderr.txt */
        execve(path, argv, env);
        fprintf(stderr, "tessera_launcher: cannot run %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* also here, so the group exists before we signal it */
    return pid;
}

/* Succeeded: the last status, then the finish file the client looks for, then exit 0. */
static _Noreturn void finish(void) {
    check_checkpoint(false);
    for (int i = 0; shm && i < 20 && shm[APP_STATUS * CHANNEL_SIZE]; i++) /* BOINC waits 2 s */
        nanosleep(&(struct timespec){0, TICK_NS}, NULL);
    send_status(1.0, true);
    FILE *f = fopen("boinc_finish_called.tmp", "w");
    if (!f || fputs("0\n", f) < 0 || fclose(f) != 0 ||
        rename("boinc_finish_called.tmp", "boinc_finish_called") != 0)
        stop(1, "cannot write boinc_finish_called");
    exit(0);
}

int main(int argc, char **argv) {
    if (!getcwd(slot, sizeof slot)) return 1;
    int fd = open("stderr.txt", O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0 && fd != STDERR_FILENO) {
        dup2(fd, STDERR_FILENO); /* ours and the app's messages, whoever started us */
        close(fd);
    }
    map_shared_memory();
    cpu_done = cpu_reported = checkpoint_cpu = init_data("<wu_cpu_time>");
    pid_t client_pid = (pid_t)init_data("<client_pid>");
    const char *limit = getenv("TESSERA_LAUNCHER_HEARTBEAT_SECONDS");
    double heartbeat_limit = limit && atof(limit) > 0 ? atof(limit) : 60;

    /* What the client may have set for itself is not for us: default signals, none blocked. */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    /* The app: argv[1] and its arguments, else ./tessera_app; copy_file may drop its x bit. */
    static char *default_argv[] = {"tessera_app", NULL};
    char **app_argv = argc > 1 ? argv + 1 : default_argv;
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s%s", strchr(app_argv[0], '/') ? "" : "./", app_argv[0]);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode) && !(st.st_mode & S_IXUSR))
        chmod(path, st.st_mode | S_IXUSR);

    /* The app contract's whole environment (client/tessera_client/app_contract.py clean_env). */
    static const char *in_slot[][2] = {
        {"HOME", ""}, {"TMPDIR", "/tmp"}, {"TESSERA_SLOT", ""}, {"TESSERA_INPUT", "/input"},
        {"TESSERA_OUTPUT", "/output"}, {"TESSERA_CHECKPOINT", "/checkpoint"},
        {"TESSERA_PROGRESS", "/progress"}};
    enum { IN_SLOT = sizeof in_slot / sizeof in_slot[0] };
    static char env_text[IN_SLOT][PATH_MAX + 32];
    char *env[IN_SLOT + 6] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "TESSERA_API=1",
                              "TESSERA_CORES=1", "OMP_NUM_THREADS=1"};
    for (int i = 0; i < IN_SLOT; i++) {
        snprintf(env_text[i], sizeof env_text[i], "%s=%s%s", in_slot[i][0], slot, in_slot[i][1]);
        env[5 + i] = env_text[i];
    }
    env[5 + IN_SLOT] = NULL;
    mkdir("tmp", 0700);

    check_checkpoint(true); /* a checkpoint already here belongs to an earlier episode */
    bool suspended = false;
    int runs = 0;
    double last_heartbeat = now(), next_second = now() + 1;
    char text[CHANNEL_SIZE];
    for (;;) {
        if (!child && !suspended) {
            if (runs++ == MAX_RUNS) stop(1, "the app still asks to run again after 10000 runs");
            child = start_app(path, app_argv, env);
        }
        nanosleep(&(struct timespec){0, TICK_NS}, NULL);
        if (stop_signal) stop(0, "stopped by a signal; the task can start again later");

        if (receive(CONTROL_REQUEST, text)) {
            if (strstr(text, "<quit/>")) stop(0, NULL);
            if (strstr(text, "<abort/>")) stop(EXIT_ABORTED_BY_CLIENT, "aborted by the client");
            if (strstr(text, "<suspend/>") && !suspended) {
                suspended = true;
                if (child) kill(-child, SIGSTOP);
            } else if (strstr(text, "<resume/>") && suspended) {
                suspended = false;
                if (child) kill(-child, SIGCONT);
            }
        }
        if (receive(HEARTBEAT, text) && strstr(text, "<heartbeat/>")) last_heartbeat = now();

        /* Ended? Look without reaping, so the group's id stays ours while we clear it out. */
        siginfo_t info;
        memset(&info, 0, sizeof info);
        if (child && waitid(P_PID, child, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == child) {
            int status;
            struct rusage ru;
            kill(-child, SIGKILL); /* whatever it left running */
            wait4(child, &status, 0, &ru);
            child = 0;
            cpu_done += ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
                        ru.ru_stime.tv_usec / 1e6;
            check_checkpoint(false);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 0) finish();
            if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_CHECKPOINT) continue;
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            code = code > 255 ? 255 : code;
            snprintf(text, sizeof text, "the app failed: %s %d, exiting with %d",
                     WIFEXITED(status) ? "exit code" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), code);
            stop(code, text);
        }

        if (now() < next_second) continue;
        next_second = now() + 1;
        if (shm && now() - last_heartbeat > heartbeat_limit)
            stop(0, "no heartbeat from the client: it is gone, stopping the app");
        if (client_pid > 0 && kill(client_pid, 0) != 0 && errno == ESRCH)
            stop(0, "the client's process is gone, stopping the app");
        check_checkpoint(false);
        read_progress();
        send_status(fraction, false);
    }
}
