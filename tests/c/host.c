/*
 * A real C host for the subsession C ABI, built and run by tests/c/run.sh.
 *
 * It does what a C/C++ plug-in of a DCC app would: embeds Python, dlopen()s the
 * library, and drives two sessions holding two versions of one module, from the
 * main thread and from threads Python never saw. Every check prints "ok" or
 * "FAIL" with the library's own error messages; the last line is
 * "N passed, M failed" and the exit status is non-zero on any failure.
 *
 * usage: host LIBRARY PYROOT MODULES
 *   LIBRARY  path of libsubsession.so
 *   PYROOT   folder holding the `subsession` package (put on sys.path)
 *   MODULES  folder with v1/greeting.py and v2/greeting.py
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h> /* first, as Python's docs require */

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utime.h>

#include "subsession.h"

/* The library's functions, typed from the header's own declarations: a header
 * that no longer matches this program fails to compile. */
static struct {
    __typeof__(&subsession_abi_version) abi_version;
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

static int passed, failed;

#define CHECK(cond, ...)                       \
    do {                                       \
        if (cond) {                            \
            passed++;                          \
            printf("ok   - ");                 \
        } else {                               \
            failed++;                          \
            printf("FAIL - ");                 \
        }                                      \
        printf(__VA_ARGS__);                   \
        printf("\n");                          \
        fflush(stdout);                        \
    } while (0)

static const char *last_error(void) {
    const char *e = ss.last_error();
    return e ? e : "(no error)";
}

/* Checks a result code; on a mismatch prints the code names and the message. */
static void expect(subsession_result got, subsession_result want, const char *what) {
    CHECK(got == want, "%s -> %s", what, ss.result_name((int)got));
    if (got != want) {
        printf("       expected %s; last error: %s\n", ss.result_name((int)want), last_error());
    }
}

/* subsession_call, returning the library string copied into buf ("" on failure). */
static subsession_result call(const char *session, const char *target, char *buf, size_t size) {
    char *out = NULL;
    subsession_result rc = ss.call(session, target, NULL, &out);
    snprintf(buf, size, "%s", out ? out : "");
    ss.string_free(out); /* NULL-safe: always free what the library handed out */
    return rc;
}

static void *load_symbol(void *lib, const char *name) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "missing symbol %s: %s\n", name, dlerror());
        exit(2);
    }
    return p;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Rewrites a module and moves its mtime 2 s past the old one, so stale detection
 * (mtime + size) sees the change even within the same second. */
static void rewrite_module(const char *path, const char *text) {
    struct stat before;
    if (stat(path, &before) != 0) {
        perror(path);
        exit(2);
    }
    write_file(path, text);
    struct utimbuf times = {before.st_atime, before.st_mtime + 2};
    if (utime(path, &times) != 0) {
        perror(path);
        exit(2);
    }
}

/* Threads Python has never seen: each call attaches and detaches by itself. */
struct worker {
    int index;
    int mismatches;
};

static void *worker_main(void *arg) {
    struct worker *w = arg;
    char buf[64];
    for (int i = 0; i < 50; i++) {
        const char *session = (i + w->index) % 2 ? "toolA" : "toolB";
        const char *want = (i + w->index) % 2 ? "1.0" : "2.0";
        if (call(session, "greeting.version", buf, sizeof buf) != SUBSESSION_RESULT_OK ||
            strcmp(buf, want) != 0) {
            w->mismatches++;
            printf("       thread %d: %s gave '%s' (%s)\n", w->index, session, buf, last_error());
        }
        /* last_error is per thread: this failure is ours alone */
        if (ss.exec("no-such-session", "pass") != SUBSESSION_RESULT_NO_SUCH_SESSION ||
            strstr(last_error(), "no-such-session") == NULL) {
            w->mismatches++;
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s LIBRARY PYROOT MODULES\n", argv[0]);
        return 2;
    }
    const char *library = argv[1], *pyroot = argv[2], *modules = argv[3];
    if (strpbrk(modules, "\"\\") || strpbrk(pyroot, "\"\\'")) {
        fprintf(stderr, "test folders must not contain quotes or backslashes\n");
        return 2;
    }

    /* RTLD_LOCAL is fine for this library; libpython is global because this
     * program links it (python3-config --embed). */
    void *lib = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 2;
    }
#define LOAD(field) *(void **)(&ss.field) = load_symbol(lib, "subsession_" #field)
    LOAD(abi_version);
    LOAD(result_name);
    LOAD(last_error);
    LOAD(string_free);
    LOAD(create);
    LOAD(exec);
    LOAD(import);
    LOAD(call);
    LOAD(reload);
    LOAD(close);
    LOAD(list);
#undef LOAD

    char buf[4096], config[1024], path[1024];
    char *json = NULL;

    /* -- before Python runs ------------------------------------------------------- */
    CHECK(ss.abi_version() == SUBSESSION_ABI_VERSION, "ABI version %u", ss.abi_version());
    expect(ss.list(&json), SUBSESSION_RESULT_NOT_INITIALIZED, "list before Py_Initialize");
    printf("       message: %s\n", last_error());
    CHECK(!Py_IsInitialized(), "the library did not initialise Python");

    /* -- embed Python, then release the GIL so any thread may call ------------------ */
    Py_InitializeEx(0);
    snprintf(buf, sizeof buf, "import sys; sys.path.insert(0, '%s')", pyroot);
    CHECK(PyRun_SimpleString(buf) == 0, "sys.path has the subsession package");
    PyThreadState *main_state = PyEval_SaveThread();

    /* -- two sessions, two versions of `greeting` ----------------------------------- */
    snprintf(config, sizeof config, "{\"paths\": [\"%s/v1\"], \"env\": {\"TOOL\": \"A\"}}", modules);
    expect(ss.create("toolA", config), SUBSESSION_RESULT_OK, "create toolA (v1)");
    snprintf(config, sizeof config, "{\"paths\": [\"%s/v2\"]}", modules);
    expect(ss.create("toolB", config), SUBSESSION_RESULT_OK, "create toolB (v2)");

    for (int round = 0; round < 2; round++) {
        expect(call("toolA", "greeting.version", buf, sizeof buf), SUBSESSION_RESULT_OK,
               "call toolA greeting.version");
        CHECK(strcmp(buf, "1.0") == 0, "toolA greeting.version() = '%s'", buf);
        char *out = NULL;
        expect(ss.call("toolB", "greeting", "version", &out), SUBSESSION_RESULT_OK,
               "call toolB greeting + version");
        CHECK(out && strcmp(out, "2.0") == 0, "toolB greeting.version() = '%s'", out ? out : "");
        ss.string_free(out);
    }
    expect(ss.exec("toolA", "import os, greeting\nassert greeting.VERSION == '1.0'\n"
                            "assert os.environ['TOOL'] == 'A'"),
           SUBSESSION_RESULT_OK, "exec in toolA sees v1 and its env");
    expect(ss.import("toolB", "greeting"), SUBSESSION_RESULT_OK, "import greeting in toolB");
    expect(call("toolA", "greeting:Greeter.hello", buf, sizeof buf), SUBSESSION_RESULT_OK,
           "call a dotted target");
    CHECK(strcmp(buf, "hello from 1.0") == 0, "toolA Greeter.hello() = '%s'", buf);

    expect(ss.list(&json), SUBSESSION_RESULT_OK, "list");
    CHECK(json && strstr(json, "\"toolA\"") && strstr(json, "\"toolB\""), "list = %s",
          json ? json : "(null)");
    ss.string_free(json);
    json = NULL;

    /* -- every error class ------------------------------------------------------------ */
    expect(ss.create("toolA", NULL), SUBSESSION_RESULT_SESSION_EXISTS, "create toolA again");
    printf("       message: %s\n", last_error());
    expect(ss.create("toolC", "{\"pathz\": []}"), SUBSESSION_RESULT_INVALID_CONFIG,
           "create with an unknown config key");
    printf("       message: %s\n", last_error());
    expect(ss.create("toolC", "{\"paths\": "), SUBSESSION_RESULT_INVALID_CONFIG,
           "create with broken JSON");
    printf("       message: %s\n", last_error());
    expect(ss.exec("nobody", "pass"), SUBSESSION_RESULT_NO_SUCH_SESSION, "exec in unknown session");
    printf("       message: %s\n", last_error());
    expect(call("toolB", "greeting.boom", buf, sizeof buf), SUBSESSION_RESULT_PYTHON_EXCEPTION,
           "call a function that raises");
    CHECK(strstr(last_error(), "ValueError: boom from 2.0") && strstr(last_error(), "Traceback") &&
              strstr(last_error(), "greeting.py\", line"),
          "the message holds the exception and its traceback:\n%s", last_error());
    CHECK(buf[0] == '\0', "no result string on failure");
    expect(ss.exec(NULL, "pass"), SUBSESSION_RESULT_NULL_ARGUMENT, "exec with a NULL name");
    printf("       message: %s\n", last_error());
    expect(ss.exec("toolA", "x = '\xff'"), SUBSESSION_RESULT_INVALID_UTF8, "exec with invalid UTF-8");
    printf("       message: %s\n", last_error());
    expect(ss.exec("toolA", "pass"), SUBSESSION_RESULT_OK, "a success clears the last error");
    CHECK(ss.last_error() == NULL, "last_error() is NULL after success");

    /* -- threads Python never saw, calling both sessions at once ------------------------ */
    pthread_t threads[4];
    struct worker workers[4];
    for (int i = 0; i < 4; i++) {
        workers[i] = (struct worker){i, 0};
        pthread_create(&threads[i], NULL, worker_main, &workers[i]);
    }
    int mismatches = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        mismatches += workers[i].mismatches;
    }
    CHECK(mismatches == 0, "4 new threads x 50 interleaved calls: %d mismatches", mismatches);

    /* -- reload after an edit on disk -------------------------------------------------- */
    snprintf(path, sizeof path, "%s/v2/greeting.py", modules);
    rewrite_module(path, "VERSION = '2.1'\n"
                         "def version():\n    return VERSION\n");
    expect(ss.reload("toolB", 0, 0, &json), SUBSESSION_RESULT_OK, "reload stale in toolB");
    CHECK(json && strcmp(json, "[\"greeting\"]") == 0, "reloaded %s", json ? json : "(null)");
    ss.string_free(json);
    json = NULL;
    expect(call("toolB", "greeting.version", buf, sizeof buf), SUBSESSION_RESULT_OK, "call after reload");
    CHECK(strcmp(buf, "2.1") == 0, "toolB greeting.version() = '%s' after the edit", buf);
    expect(call("toolA", "greeting.version", buf, sizeof buf), SUBSESSION_RESULT_OK, "toolA untouched");
    CHECK(strcmp(buf, "1.0") == 0, "toolA greeting.version() = '%s'", buf);
    expect(ss.reload("toolA", 1, 1, &json), SUBSESSION_RESULT_OK, "reload all, deep, in toolA");
    CHECK(json && strstr(json, "\"greeting\""), "reloaded %s", json ? json : "(null)");
    ss.string_free(json);
    json = NULL;

    /* -- the global interpreter never saw either copy ------------------------------------ */
    PyGILState_STATE gil = PyGILState_Ensure();
    CHECK(PyRun_SimpleString("import sys\nassert 'greeting' not in sys.modules\n"
                             "import subsession\nassert subsession.get('toolA').modules['greeting']"
                             ".VERSION == '1.0'\n") == 0,
          "no leak into the global sys.modules; Python's API sees the C sessions");
    PyGILState_Release(gil);

    /* -- close ------------------------------------------------------------------------ */
    expect(ss.close("toolA", &json), SUBSESSION_RESULT_OK, "close toolA");
    CHECK(json && strstr(json, "\"session\":\"toolA\"") && strstr(json, "\"leaks\":{}"),
          "clean unload report %s", json ? json : "(null)");
    ss.string_free(json);
    json = NULL;
    expect(call("toolA", "greeting.version", buf, sizeof buf), SUBSESSION_RESULT_NO_SUCH_SESSION,
           "call after close");
    printf("       message: %s\n", last_error());
    expect(ss.close("toolB", NULL), SUBSESSION_RESULT_OK, "close toolB (report discarded)");

    /* -- after Python is gone ------------------------------------------------------------ */
    PyEval_RestoreThread(main_state);
    CHECK(Py_FinalizeEx() == 0, "Py_FinalizeEx");
    expect(ss.exec("toolB", "pass"), SUBSESSION_RESULT_NOT_INITIALIZED, "exec after finalize");
    printf("       message: %s\n", last_error());

    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
