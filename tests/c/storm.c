/*
 * An adversarial C host for the subsession C ABI, built and run by tests/c/storm.sh.
 *
 * Eight threads Python never saw call every function for a bounded time with
 * random, mostly bad input: NULL, invalid UTF-8, 1 MB strings, deeply nested and
 * malformed configs, use after close, double close, concurrent create/close of one
 * name, `${VAR}` configs while other threads set environment variables, and Python
 * code that changes the environment. One more thread, on a 512 KiB stack, parses
 * a config nested 10,000 levels deep.
 *
 * Checked: every call returns a documented code; a failing call leaves a message;
 * `out` strings are NULL on failure; no call stalls (a watchdog fails the run if no
 * call finishes for STALL_SECONDS); the process survives. The last line is
 * "N passed, M failed"; the exit status is non-zero on any failure.
 *
 * usage: storm LIBRARY PYROOT SECONDS [STALL_SECONDS [MIN_CALLS]]
 *   STALL_SECONDS  no finished call for this long is a deadlock (default 30)
 *   MIN_CALLS      fewer calls in all fails the run (default 100; valgrind runs ~50x
 *                  slower and passes 1)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first, as Python's docs require */

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "subsession.h"

#define THREADS 8
#define NAMES 4

static struct {
    __typeof__(&subsession_result_name) result_name;
    __typeof__(&subsession_last_error) last_error;
    __typeof__(&subsession_string_free) string_free;
    __typeof__(&subsession_create) create;
    __typeof__(&subsession_exec) exec;
    __typeof__(&subsession_import) import;
    __typeof__(&subsession_call) call;
    __typeof__(&subsession_reload) reload;
    __typeof__(&subsession_close) close;
    __typeof__(&subsession_list) list;
} ss;

static atomic_long calls, bad_codes, missing_messages, dirty_outs, panics;
static atomic_long last_progress; /* monotonic seconds of the last finished call */
static atomic_int stop;
static char *huge;        /* 1 MB of 'a' */
static char *deep_config; /* {"paths": [[[...]]]} 10,000 levels */
static const char *names[NAMES] = {"storm0", "storm1", "storm2", "storm3"};

static long now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long)t.tv_sec;
}

static void *load_symbol(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "missing symbol %s: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

/* Every result must be one of the documented codes, with a message on failure. */
static void record(subsession_result rc, char *out) {
    atomic_fetch_add(&calls, 1);
    atomic_store(&last_progress, now_s());
    if ((int)rc < SUBSESSION_RESULT_OK || (int)rc > SUBSESSION_RESULT_PANIC) {
        atomic_fetch_add(&bad_codes, 1);
        printf("       undocumented code %d\n", (int)rc);
    }
    if (rc == SUBSESSION_RESULT_PANIC) {
        atomic_fetch_add(&panics, 1);
        printf("       panic: %s\n", ss.last_error());
    }
    if (rc != SUBSESSION_RESULT_OK) {
        const char *e = ss.last_error();
        if (e == NULL || e[0] == '\0') {
            atomic_fetch_add(&missing_messages, 1);
        }
        if (out != NULL) {
            atomic_fetch_add(&dirty_outs, 1);
        }
    }
    ss.string_free(out);
}

static const char *pick_name(unsigned *seed) {
    switch (rand_r(seed) % 8) {
    case 0: return NULL;
    case 1: return "\xff\xfe bad utf-8";
    case 2: return huge;
    case 3: return "";
    default: return names[rand_r(seed) % NAMES];
    }
}

static const char *pick_config(unsigned *seed) {
    static const char *configs[] = {
        NULL,
        "{}",
        "{\"paths\": [\"${HOME}/x\", \"${STORM_VAR:-d}\"], \"env\": {\"STORM_A\": \"${HOME}\"}}",
        "{\"paths\": [\"${STORM_UNDEFINED_VAR}\"]}",
        "{\"paths\": ",
        "{\"paths\": [1, 2]}",
        "{\"env\": {\"A\": \"a\\u0000b\"}}",
        "{\"unknown\": true}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        "{\"startup\": \"no_such_startup_module\"}",
        "\xff\xfe",
    };
    unsigned n = rand_r(seed) % (sizeof configs / sizeof *configs + 2);
    if (n == sizeof configs / sizeof *configs) return deep_config;
    if (n == sizeof configs / sizeof *configs + 1) return huge;
    return configs[n];
}

static const char *pick_source(unsigned *seed) {
    static const char *sources[] = {
        NULL,
        "pass",
        "import os\nos.environ['STORM_VAR'] = 'x' * 100\ndel os.environ['STORM_VAR']",
        "import os\nfor i in range(20): os.environ['STORM_%d' % i] = str(i)",
        "import json, collections\nx = json.dumps({'a': 1})",
        "raise ValueError('storm')",
        "def f(:",
        "import sys\nsys.path.insert(0, '/nonexistent')",
        "\xff\xfe",
    };
    return sources[rand_r(seed) % (sizeof sources / sizeof *sources)];
}

static void *worker(void *arg) {
    unsigned seed = (unsigned)(size_t)arg * 7919u + 1u;
    while (!atomic_load(&stop)) {
        char *out = NULL;
        subsession_result rc;
        switch (rand_r(&seed) % 9) {
        case 0:
        case 1:
            rc = ss.create(pick_name(&seed), pick_config(&seed));
            record(rc, NULL);
            break;
        case 2:
            rc = ss.exec(pick_name(&seed), pick_source(&seed));
            record(rc, NULL);
            break;
        case 3:
            rc = ss.import(pick_name(&seed), rand_r(&seed) % 2 ? "json" : "\xff");
            record(rc, NULL);
            break;
        case 4:
            rc = ss.call(pick_name(&seed), rand_r(&seed) % 2 ? "os.getcwd" : "nope.nope",
                         rand_r(&seed) % 2 ? NULL : "[1, 2", &out);
            record(rc, rc == SUBSESSION_RESULT_OK ? NULL : out);
            if (rc == SUBSESSION_RESULT_OK) ss.string_free(out);
            break;
        case 5:
            rc = ss.reload(pick_name(&seed), rand_r(&seed) % 3, rand_r(&seed) % 3,
                           rand_r(&seed) % 2 ? &out : NULL);
            record(rc, rc == SUBSESSION_RESULT_OK ? NULL : out);
            if (rc == SUBSESSION_RESULT_OK) ss.string_free(out);
            break;
        case 6:
        case 7:
            rc = ss.close(pick_name(&seed), rand_r(&seed) % 2 ? &out : NULL);
            record(rc, rc == SUBSESSION_RESULT_OK ? NULL : out);
            if (rc == SUBSESSION_RESULT_OK) ss.string_free(out);
            break;
        default:
            rc = ss.list(rand_r(&seed) % 8 ? &out : NULL);
            record(rc, rc == SUBSESSION_RESULT_OK ? NULL : out);
            if (rc == SUBSESSION_RESULT_OK) ss.string_free(out);
            break;
        }
        (void)ss.result_name(rand_r(&seed) % 40 - 20);
    }
    return NULL;
}

static atomic_int deep_ok;

static void *small_stack_worker(void *arg) {
    (void)arg;
    subsession_result rc = ss.create("storm_deep", deep_config);
    record(rc, NULL);
    const char *e = ss.last_error();
    atomic_store(&deep_ok, rc == SUBSESSION_RESULT_INVALID_CONFIG && e != NULL &&
                               strstr(e, "config_json:1:") != NULL);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4 || argc > 6) {
        fprintf(stderr, "usage: %s LIBRARY PYROOT SECONDS [STALL_SECONDS [MIN_CALLS]]\n",
                argv[0]);
        return 2;
    }
    int seconds = atoi(argv[3]);
    const int stall_s = argc > 4 ? atoi(argv[4]) : 30;
    const long min_calls = argc > 5 ? atol(argv[5]) : 100;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
    ss.result_name = load_symbol(lib, "subsession_result_name");
    ss.last_error = load_symbol(lib, "subsession_last_error");
    ss.string_free = load_symbol(lib, "subsession_string_free");
    ss.create = load_symbol(lib, "subsession_create");
    ss.exec = load_symbol(lib, "subsession_exec");
    ss.import = load_symbol(lib, "subsession_import");
    ss.call = load_symbol(lib, "subsession_call");
    ss.reload = load_symbol(lib, "subsession_reload");
    ss.close = load_symbol(lib, "subsession_close");
    ss.list = load_symbol(lib, "subsession_list");

    huge = malloc(1 << 20);
    memset(huge, 'a', (1 << 20) - 1);
    huge[(1 << 20) - 1] = '\0';
    const int levels = 10000;
    deep_config = malloc(16 + 2 * (size_t)levels);
    char *p = deep_config + sprintf(deep_config, "{\"paths\": ");
    memset(p, '[', levels);
    memset(p + levels, ']', levels);
    strcpy(p + 2 * levels, "}");

    Py_InitializeEx(0);
    PyObject *sys_path = PySys_GetObject("path"); /* borrowed */
    PyObject *root = PyUnicode_FromString(argv[2]);
    PyList_Insert(sys_path, 0, root);
    Py_DECREF(root);
    /* Python threads that set variables while the C threads expand ${VAR}. */
    PyRun_SimpleString(
        "import os, threading, time\n"
        "def _storm_env():\n"
        "    i = 0\n"
        "    while not getattr(threading, '_storm_stop', False):\n"
        "        os.environ['STORM_VAR'] = 'v' * (i % 500)\n"
        "        del os.environ['STORM_VAR']\n"
        "        i += 1\n"
        "        if i % 100 == 0: time.sleep(0)\n"
        "threading.Thread(target=_storm_env, daemon=True).start()\n");
    PyThreadState *main_state = PyEval_SaveThread();

    atomic_store(&last_progress, now_s());
    pthread_t threads[THREADS];
    for (size_t i = 0; i < THREADS; i++) {
        pthread_create(&threads[i], NULL, worker, (void *)i);
    }
    pthread_attr_t small;
    pthread_attr_init(&small);
    pthread_attr_setstacksize(&small, 512 * 1024);
    pthread_t deep;
    pthread_create(&deep, &small, small_stack_worker, NULL);

    int stalled = 0;
    long until = now_s() + seconds;
    while (now_s() < until) {
        sleep(1);
        if (now_s() - atomic_load(&last_progress) > stall_s) {
            stalled = 1;
            break;
        }
    }
    atomic_store(&stop, 1);
    if (stalled) {
        printf("FAIL - no call finished for %d s: a deadlock\n", stall_s);
        printf("0 passed, 1 failed\n");
        fflush(stdout);
        _exit(1); /* the stuck threads cannot be joined */
    }
    for (size_t i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    pthread_join(deep, NULL);

    PyEval_RestoreThread(main_state);
    PyRun_SimpleString("threading._storm_stop = True\n");
    char *out = NULL;
    subsession_result final = ss.list(&out);
    int listed = final == SUBSESSION_RESULT_OK && out != NULL && out[0] == '[';
    ss.string_free(out);
    for (int i = 0; i < NAMES; i++) {
        subsession_result rc = ss.close(names[i], NULL);
        (void)rc;
    }

    int passed = 0, failed = 0;
#define CHECK(cond, ...)                                                        \
    do {                                                                        \
        if (cond) {                                                             \
            passed++;                                                           \
            printf("ok   - ");                                                  \
        } else {                                                                \
            failed++;                                                           \
            printf("FAIL - ");                                                  \
        }                                                                       \
        printf(__VA_ARGS__);                                                    \
        printf("\n");                                                           \
    } while (0)
    CHECK(atomic_load(&calls) >= min_calls, "%ld calls from %d threads in %d s (at least %ld)",
          atomic_load(&calls), THREADS, seconds, min_calls);
    CHECK(atomic_load(&bad_codes) == 0, "only documented result codes (%ld others)",
          atomic_load(&bad_codes));
    CHECK(atomic_load(&panics) == 0, "no panic reached the boundary (%ld)", atomic_load(&panics));
    CHECK(atomic_load(&missing_messages) == 0, "every failure has a message (%ld without)",
          atomic_load(&missing_messages));
    CHECK(atomic_load(&dirty_outs) == 0, "out strings are NULL on failure (%ld not)",
          atomic_load(&dirty_outs));
    CHECK(atomic_load(&deep_ok), "a 10,000-level config on a 512 KiB stack is INVALID_CONFIG");
    CHECK(listed, "the process is usable afterwards (subsession_list)");
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    Py_Finalize();
    return failed ? 1 : 0;
}
