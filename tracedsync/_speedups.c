/* tracedsync._speedups: the compiled hot path of tracedsync.Lock and RLock.
 *
 * LockCore and RLockCore are base types; tracedsync.primitives subclasses
 * them in Python (naming, registration, repr, the Condition protocol) and
 * inherits acquire/__enter__/release/__exit__ from here, so the hot calls
 * run with no Python frame at all.
 *
 * The hot path is exactly the pure-Python one (tracedsync/primitives.py):
 * acquire = argument shape check, a non-blocking try and one clock read;
 * release = one clock read and the counter updates. Anything
 * else calls back into tracedsync.recorder (lock_acquire_slow,
 * rlock_acquire_slow, hold_end; on 3.11+ the common case of hold_end is done
 * here, see "hold records"), which reads and writes the same attributes
 * the pure classes have (_try, _t, _owner, _hsum, _hmax, _hhist,
 * _blame, _st, _meta, _count, _reent): they are members here.
 *
 * The underlying lock is a PyThread_type_lock, the lock _thread.lock is made
 * of (3.10-3.12), so contention behaves as with threading.Lock: a release
 * hands the lock to a sleeping waiter. (A GIL-protected flag with a wake-up
 * signal saved ~40 ns per acquire/release but let the releasing thread take
 * the lock straight back: examples/counter.py then showed ten times fewer
 * waits than threading.Lock would have. Tracing must not change what it
 * measures.) `_try(blocking=True,
 * timeout=-1)` acquires it like CPython's _thread.lock.acquire: it releases
 * the GIL while blocking, wakes on signals, runs pending calls (signal
 * handlers: Ctrl-C raises KeyboardInterrupt) and retries with the remaining
 * timeout. Bad arguments are handed to a fresh _thread.lock's acquire so the
 * error is the running interpreter's own, message included.
 *
 * Only public C API is used (no _PyTime_*: the clock is
 * clock_gettime(CLOCK_MONOTONIC), the one time.monotonic_ns() reads on
 * Linux, so recorder timestamps and ours compare).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <structmember.h>
#include <math.h>
#include <time.h>

#define RAW_BUCKETS 65
#define NEVER (1LL << 62)
#define UNSET_TIMEOUT (-1000000000LL) /* -1 s in ns: "no timeout" */

/* Holds at least this long (ns) go to recorder.hold_end (set_hold_threshold). */
static long long hold_ns = NEVER;

/* tracedsync.recorder (bound by _bind) and interned attribute names. */
static PyObject *recorder = NULL;
static PyObject *str_lock_acquire_slow = NULL;
static PyObject *str_rlock_acquire_slow = NULL;
static PyObject *str_hold_end = NULL;
static PyObject *str_blocking = NULL;
static PyObject *str_timeout = NULL;
static PyObject *str_acquire = NULL;
static PyObject *str_release = NULL;
static PyObject *allocate_lock = NULL; /* _thread.allocate_lock */
static PyObject *minus_one = NULL;

static inline long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int
bit_length(unsigned long long v)
{
    return v ? 64 - __builtin_clzll(v) : 0;
}

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char locked;
    long long t;          /* _t: when the current hold began (ns), 0 if none */
    unsigned long owner;  /* _owner: holding thread's ident, 0 if none */
    Py_ssize_t count;     /* _count (RLock): recursion level */
    Py_ssize_t depth;     /* _depth (RLock): deepest level in the current hold */
    unsigned long long reent; /* _reent (RLock) */
    unsigned long long hsum;  /* _hsum */
    unsigned long long hmax;  /* _hmax */
    PyObject *blame;      /* _blame: None or the reserved hold span id */
    PyObject *st;         /* _st: recorder.SlowStats */
    PyObject *meta;       /* _meta: (id, name, kind) */
    PyObject *weakreflist;
    unsigned long long hhist[RAW_BUCKETS]; /* _hhist */
} CoreObject;

/* -- the underlying lock, as CPython's _thread.lock ------------------------ */

/* What _thread/_threadmodule.c's acquire_timed does, with public API only.
 * timeout_ns < 0 blocks forever. */
static PyLockStatus
acquire_timed(PyThread_type_lock lock, long long timeout_ns)
{
    long long deadline = 0;
    PyLockStatus r;
    if (timeout_ns > 0) {
        deadline = now_ns() + timeout_ns;
    }
    do {
        long long us = timeout_ns < 0 ? -1 : (timeout_ns + 999) / 1000;
        /* first a non-blocking try without releasing the GIL */
        r = PyThread_acquire_lock_timed(lock, 0, 0);
        if (r == PY_LOCK_FAILURE && us != 0) {
            Py_BEGIN_ALLOW_THREADS
            r = PyThread_acquire_lock_timed(lock, (PY_TIMEOUT_T)us, 1);
            Py_END_ALLOW_THREADS
        }
        if (r == PY_LOCK_INTR) {
            /* Run signal handlers; their exception (KeyboardInterrupt)
             * propagates. */
            if (Py_MakePendingCalls() < 0) {
                return PY_LOCK_INTR;
            }
            if (timeout_ns > 0) {
                timeout_ns = deadline - now_ns();
                if (timeout_ns < 0) {
                    r = PY_LOCK_FAILURE;
                }
            }
        }
    } while (r == PY_LOCK_INTR);
    return r;
}

/* Call a fresh, free _thread.lock's acquire with these arguments: it raises
 * exactly what the interpreter raises for them. Returns -1 with that error
 * set; 0 if it accepted them (the caller then converts them itself). */
static int
raise_like_stdlib(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *lock = PyObject_CallNoArgs(allocate_lock);
    if (lock == NULL) {
        return -1;
    }
    PyObject *meth = PyObject_GetAttr(lock, str_acquire);
    if (meth == NULL) {
        Py_DECREF(lock);
        return -1;
    }
    PyObject *res = PyObject_Vectorcall(meth, args, nargs, kwnames);
    Py_DECREF(meth);
    if (res == NULL) {
        Py_DECREF(lock);
        return -1;
    }
    Py_DECREF(res);
    Py_DECREF(lock);
    return 0;
}

/* Split (blocking, timeout) out of a vectorcall. Returns -1 on a bad shape
 * (too many arguments, unknown or repeated keyword): the caller lets the
 * stdlib raise. Missing ones stay NULL. */
static int
split_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           PyObject **blocking, PyObject **timeout)
{
    *blocking = NULL;
    *timeout = NULL;
    if (nargs > 2) {
        return -1;
    }
    if (nargs > 0) {
        *blocking = args[0];
    }
    if (nargs > 1) {
        *timeout = args[1];
    }
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, i);
            PyObject **slot;
            if (key == str_blocking || PyUnicode_Compare(key, str_blocking) == 0) {
                slot = blocking;
            }
            else if (key == str_timeout || PyUnicode_Compare(key, str_timeout) == 0) {
                slot = timeout;
            }
            else {
                return -1;
            }
            if (*slot != NULL) {
                return -1;
            }
            *slot = args[nargs + i];
        }
    }
    return 0;
}

/* Seconds object -> ns, as _PyTime_FromSecondsObject(ROUND_TIMEOUT) would
 * accept it. -1 (no exception set) when it must be left to the stdlib. */
static int
timeout_to_ns(PyObject *obj, long long *out)
{
    if (PyFloat_Check(obj)) {
        double d = PyFloat_AS_DOUBLE(obj);
        if (d != d) {
            return -1;
        }
        d *= 1e9;
        d = d >= 0 ? ceil(d) : floor(d);
        if (!(d >= -9.2e18 && d <= 9.2e18)) {
            return -1;
        }
        *out = (long long)d;
        return 0;
    }
    int overflow = 0;
    long long v;
    if (PyLong_Check(obj)) {
        v = PyLong_AsLongLongAndOverflow(obj, &overflow);
    }
    else {
        PyObject *index = PyNumber_Index(obj);
        if (index == NULL) {
            PyErr_Clear();
            return -1;
        }
        v = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
    }
    if (v == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    if (overflow || v > 9200000000LL || v < -9200000000LL) {
        return -1;
    }
    *out = v * 1000000000LL;
    return 0;
}

/* _try(blocking=True, timeout=-1): acquire the underlying lock, exactly like
 * _thread.lock.acquire. The recorder's slow path blocks through this. */
static PyObject *
core_try(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking_obj, *timeout_obj;
    long long timeout = UNSET_TIMEOUT;
    int blocking = 1;
    if (split_args(args, nargs, kwnames, &blocking_obj, &timeout_obj) < 0) {
        goto stdlib;
    }
    if (blocking_obj != NULL && (blocking = PyObject_IsTrue(blocking_obj)) < 0) {
        return NULL;
    }
    if (timeout_obj != NULL && timeout_to_ns(timeout_obj, &timeout) < 0) {
        goto stdlib;
    }
    if (!blocking && timeout != UNSET_TIMEOUT) {
        goto stdlib;
    }
    if (timeout < 0 && timeout != UNSET_TIMEOUT) {
        goto stdlib;
    }
    if (!blocking) {
        timeout = 0;
    }
    else if (timeout != UNSET_TIMEOUT && (timeout + 999) / 1000 > (long long)PY_TIMEOUT_MAX) {
        goto stdlib;
    }
    PyLockStatus r = acquire_timed(self->lock, timeout);
    if (r == PY_LOCK_INTR) {
        return NULL;
    }
    if (r == PY_LOCK_ACQUIRED) {
        self->locked = 1;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;

stdlib:
    if (raise_like_stdlib(args, nargs, kwnames) == 0) {
        PyErr_SetString(PyExc_ValueError, "unsupported acquire() arguments");
    }
    return NULL;
}

static PyObject *
core_rel(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    self->locked = 0;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

/* -- the hot path ------------------------------------------------------------ */

static inline int
try_now(CoreObject *self)
{
    if (PyThread_acquire_lock_timed(self->lock, 0, 0) == PY_LOCK_ACQUIRED) {
        self->locked = 1;
        return 1;
    }
    return 0;
}

/* True when timeout is absent or exactly -1 (int or float). Anything else,
 * even equal to -1, goes to the slow path, which checks it like the stdlib. */
static inline int
is_default_timeout(PyObject *timeout)
{
    if (timeout == NULL || timeout == minus_one) {
        return 1;
    }
    if (PyLong_CheckExact(timeout)) {
        int overflow;
        return PyLong_AsLongLongAndOverflow(timeout, &overflow) == -1 && !overflow;
    }
    if (PyFloat_CheckExact(timeout)) {
        return PyFloat_AS_DOUBLE(timeout) == -1.0;
    }
    return 0;
}

static PyObject *
call_slow(CoreObject *self, PyObject *name, PyObject *blocking, PyObject *timeout)
{
    if (recorder == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync._speedups is not bound to the recorder");
        return NULL;
    }
    PyObject *fn = PyObject_GetAttr(recorder, name);
    if (fn == NULL) {
        return NULL;
    }
    PyObject *argv[3] = {(PyObject *)self, blocking ? blocking : Py_True,
                         timeout ? timeout : minus_one};
    PyObject *res = PyObject_Vectorcall(fn, argv, 3, NULL);
    Py_DECREF(fn);
    return res;
}

#if PY_VERSION_HEX >= 0x030B0000
static int record_hold_fast(CoreObject *self, long long t0, long long d);
#endif

/* End the current hold: counters, then recorder.hold_end when the hold
 * crossed the threshold or a waiter is blamed on it. Returns -1 only when
 * hold_end raised a BaseException that is not an Exception (it stays set);
 * an Exception is swallowed, like the pure path's `except Exception: pass`. */
static inline int
end_hold(CoreObject *self)
{
    long long t0 = self->t;
    if (!t0) {
        return 0;
    }
    long long d = now_ns() - t0;
    if (d < 0) {
        d = 0;
    }
    self->t = 0;
    self->owner = 0;
    self->hsum += (unsigned long long)d;
    self->hhist[bit_length((unsigned long long)d)]++;
    if ((unsigned long long)d > self->hmax) {
        self->hmax = (unsigned long long)d;
    }
    if (d < hold_ns && (self->blame == NULL || self->blame == Py_None)) {
        return 0;
    }
    /* slow: a long hold, or one a waiter links to */
    if (recorder == NULL) {
        return 0;
    }
    PyObject *fn = NULL;
    PyObject *res = NULL;
#if PY_VERSION_HEX >= 0x030B0000
    /* The common case, done here: hold_end's record, made without a frame. */
    int fast = record_hold_fast(self, t0, d);
    if (fast > 0) {
        return 0;
    }
    if (fast == 0)
#endif
        fn = PyObject_GetAttr(recorder, str_hold_end);
    if (fn != NULL) {
        PyObject *pt0 = PyLong_FromLongLong(t0);
        PyObject *pd = PyLong_FromLongLong(d);
        if (pt0 != NULL && pd != NULL) {
            PyObject *argv[3] = {(PyObject *)self, pt0, pd};
            res = PyObject_Vectorcall(fn, argv, 3, NULL);
        }
        Py_XDECREF(pt0);
        Py_XDECREF(pd);
        Py_DECREF(fn);
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

/* -- Lock ------------------------------------------------------------------ */

static PyObject *
lock_acquire(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking = NULL, *timeout = NULL;
    if (nargs || kwnames) {
        if (split_args(args, nargs, kwnames, &blocking, &timeout) < 0) {
            if (raise_like_stdlib(args, nargs, kwnames) == 0) {
                PyErr_SetString(PyExc_TypeError, "unsupported acquire() arguments");
            }
            return NULL;
        }
    }
    if ((blocking == NULL || blocking == Py_True) && is_default_timeout(timeout) &&
        try_now(self)) {
        self->t = now_ns();
        self->owner = PyThread_get_thread_ident();
        Py_RETURN_TRUE;
    }
    return call_slow(self, str_lock_acquire_slow, blocking, timeout);
}

static PyObject *
lock_enter(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (try_now(self)) {
        self->t = now_ns();
        self->owner = PyThread_get_thread_ident();
        Py_RETURN_TRUE;
    }
    return call_slow(self, str_lock_acquire_slow, NULL, NULL);
}

static PyObject *
lock_release(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (end_hold(self) < 0) {
        /* KeyboardInterrupt & co. from hold_end: still release, then raise */
        if (self->locked) {
            self->locked = 0;
            PyThread_release_lock(self->lock);
        }
        return NULL;
    }
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    self->locked = 0;
    PyThread_release_lock(self->lock);
    Py_RETURN_NONE;
}

static PyObject *
lock_exit(CoreObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return lock_release(self, NULL);
}

static PyObject *
lock_locked(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->locked);
}

/* -- RLock ----------------------------------------------------------------- */

static inline PyObject *
rlock_acquire_default(CoreObject *self)
{
    unsigned long me = PyThread_get_thread_ident();
    if (self->owner == me) {
        if (++self->count > self->depth) {
            self->depth = self->count;
        }
        self->reent++;
        Py_RETURN_TRUE;
    }
    if (try_now(self)) {
        self->owner = me;
        self->count = 1;
        self->depth = 1;
        self->t = now_ns();
        Py_RETURN_TRUE;
    }
    return call_slow(self, str_rlock_acquire_slow, NULL, NULL);
}

static PyObject *
rlock_acquire(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking = NULL, *timeout = NULL;
    if (nargs || kwnames) {
        if (split_args(args, nargs, kwnames, &blocking, &timeout) < 0) {
            if (raise_like_stdlib(args, nargs, kwnames) == 0) {
                PyErr_SetString(PyExc_TypeError, "unsupported acquire() arguments");
            }
            return NULL;
        }
        if (!((blocking == NULL || blocking == Py_True) && is_default_timeout(timeout))) {
            return call_slow(self, str_rlock_acquire_slow, blocking, timeout);
        }
    }
    return rlock_acquire_default(self);
}

static PyObject *
rlock_enter(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return rlock_acquire_default(self);
}

static PyObject *
rlock_release(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->owner != PyThread_get_thread_ident()) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count > 0) {
        Py_RETURN_NONE;
    }
    self->count = 0;
    int rc = end_hold(self);
    self->owner = 0;
    if (self->locked) {
        self->locked = 0;
        PyThread_release_lock(self->lock);
    }
    if (rc < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
rlock_exit(CoreObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return rlock_release(self, NULL);
}

static PyObject *
rlock_locked(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->count > 0);
}

static PyObject *
rlock_is_owned(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->count > 0 && self->owner == PyThread_get_thread_ident());
}

static PyObject *
rlock_recursion_count(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(self->owner == PyThread_get_thread_ident() ? self->count : 0);
}

/* -- shared ---------------------------------------------------------------- */

static PyObject *
core_at_fork_reinit(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    /* The old lock may be held by a thread that does not exist in the child:
     * freeing it is not safe, so it is leaked (as CPython's own
     * _PyThread_at_fork_reinit does). */
    PyThread_type_lock lock = PyThread_allocate_lock();
    if (lock == NULL) {
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    self->lock = lock;
    self->locked = 0;
    self->t = 0;
    self->owner = 0;
    self->count = 0;
    Py_INCREF(Py_None);
    Py_XSETREF(self->blame, Py_None);
    Py_RETURN_NONE;
}

static PyObject *
core_hhist(CoreObject *self, void *Py_UNUSED(closure))
{
    PyObject *list = PyList_New(RAW_BUCKETS);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < RAW_BUCKETS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(self->hhist[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *
core_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    CoreObject *self = (CoreObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    Py_INCREF(Py_None);
    self->blame = Py_None;
    return (PyObject *)self;
}

static void
core_dealloc(CoreObject *self)
{
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    Py_CLEAR(self->blame);
    Py_CLEAR(self->st);
    Py_CLEAR(self->meta);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define COMMON_MEMBERS                                                                   \
    {"_t", T_LONGLONG, offsetof(CoreObject, t), 0, NULL},                                \
    {"_owner", T_ULONG, offsetof(CoreObject, owner), 0, NULL},                           \
    {"_hsum", T_ULONGLONG, offsetof(CoreObject, hsum), 0, NULL},                         \
    {"_hmax", T_ULONGLONG, offsetof(CoreObject, hmax), 0, NULL},                         \
    {"_blame", T_OBJECT, offsetof(CoreObject, blame), 0, NULL},                          \
    {"_st", T_OBJECT_EX, offsetof(CoreObject, st), 0, NULL},                             \
    {"_meta", T_OBJECT_EX, offsetof(CoreObject, meta), 0, NULL}

static PyMemberDef lock_members[] = {
    COMMON_MEMBERS,
    {NULL},
};

static PyMemberDef rlock_members[] = {
    COMMON_MEMBERS,
    {"_count", T_PYSSIZET, offsetof(CoreObject, count), 0, NULL},
    {"_depth", T_PYSSIZET, offsetof(CoreObject, depth), 0, NULL},
    {"_reent", T_ULONGLONG, offsetof(CoreObject, reent), 0, NULL},
    {NULL},
};

static PyGetSetDef core_getset[] = {
    {"_hhist", (getter)core_hhist, NULL, "raw hold histogram (a copy)", NULL},
    {NULL},
};

#define COMMON_METHODS                                                                   \
    {"_try", (PyCFunction)(void (*)(void))core_try, METH_FASTCALL | METH_KEYWORDS,       \
     "acquire the underlying lock like _thread.lock.acquire"},                           \
    {"_rel", (PyCFunction)core_rel, METH_NOARGS, "release the underlying lock"},         \
    {"_at_fork_reinit", (PyCFunction)core_at_fork_reinit, METH_NOARGS, NULL}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "release the lock"},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, NULL},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS, "True if the lock is held"},
    {"_is_owned", (PyCFunction)lock_locked, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL},
};

static PyMethodDef rlock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))rlock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"__enter__", (PyCFunction)rlock_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)rlock_release, METH_NOARGS, "release one level"},
    {"__exit__", (PyCFunction)(void (*)(void))rlock_exit, METH_FASTCALL, NULL},
    {"locked", (PyCFunction)rlock_locked, METH_NOARGS, "True if some thread owns the lock"},
    {"_is_owned", (PyCFunction)rlock_is_owned, METH_NOARGS, NULL},
    {"_recursion_count", (PyCFunction)rlock_recursion_count, METH_NOARGS, NULL},
    COMMON_METHODS,
    {NULL},
};

static PyTypeObject LockCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._speedups.LockCore",
    .tp_basicsize = sizeof(CoreObject),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The compiled hot path of tracedsync.Lock (subclass it; do not use alone).",
    .tp_weaklistoffset = offsetof(CoreObject, weakreflist),
    .tp_methods = lock_methods,
    .tp_members = lock_members,
    .tp_getset = core_getset,
    .tp_new = core_new,
};

static PyTypeObject RLockCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._speedups.RLockCore",
    .tp_basicsize = sizeof(CoreObject),
    .tp_dealloc = (destructor)core_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The compiled hot path of tracedsync.RLock (subclass it; do not use alone).",
    .tp_weaklistoffset = offsetof(CoreObject, weakreflist),
    .tp_methods = rlock_methods,
    .tp_members = rlock_members,
    .tp_getset = core_getset,
    .tp_new = core_new,
};

/* -- module ---------------------------------------------------------------- */

/* The state above (recorder, hold_ns) is process-wide, and a single-phase
 * module is shared with legacy subinterpreters: only the main interpreter
 * may set it. tracedsync._impl uses pure Python in subinterpreters. */
static inline int
in_main_interpreter(void)
{
    return PyInterpreterState_Get() == PyInterpreterState_Main();
}

static PyObject *
mod_in_main_interpreter(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(in_main_interpreter());
}

static PyObject *
mod_bind(PyObject *Py_UNUSED(module), PyObject *rec)
{
    if (!in_main_interpreter()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "tracedsync._speedups is for the main interpreter only");
        return NULL;
    }
    Py_INCREF(rec);
    Py_XSETREF(recorder, rec);
    Py_RETURN_NONE;
}

static PyObject *
mod_set_hold_threshold(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (in_main_interpreter()) {
        hold_ns = v;
    }
    Py_RETURN_NONE;
}

static PyObject *
mod_hold_threshold(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(hold_ns);
}

static PyObject *
mod_monotonic_ns(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLongLong(now_ns());
}

/* -- call sites ---------------------------------------------------------------
 *
 * call_site(depth=1): tracedsync._sites.call_site with the frame walk in C
 * (it runs on the application thread for every recorded event). It reads the
 * caches of _sites (bound by bind_sites): filename -> skip, and (id(code),
 * instruction offset) -> (code, site). On any miss it calls _sites._site_from
 * on the frame reached, which fills the caches. Python 3.11+ only (the
 * frame's instruction offset is PyFrame_GetLasti); 3.10 keeps the Python
 * walk.
 */
#if PY_VERSION_HEX >= 0x030B0000
static PyObject *skip_file = NULL;  /* dict: filename -> bool */
static PyObject *site_cache = NULL; /* dict: (id(code), lasti) -> (code, site) */
static PyObject *site_from = NULL;  /* _sites._site_from(frame) */

static PyObject *
mod_bind_sites(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyCallable_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "bind_sites(skip_file: dict, site_cache: dict, site_from)");
        return NULL;
    }
    Py_INCREF(args[0]);
    Py_XSETREF(skip_file, args[0]);
    Py_INCREF(args[1]);
    Py_XSETREF(site_cache, args[1]);
    Py_INCREF(args[2]);
    Py_XSETREF(site_from, args[2]);
    Py_RETURN_NONE;
}

/* The cached site of a user frame, a new reference; NULL with no error set
 * when it is not cached. */
static PyObject *
cached_site(PyFrameObject *frame, PyCodeObject *code)
{
    PyObject *id = PyLong_FromVoidPtr(code);
    if (id == NULL) {
        return NULL;
    }
    PyObject *lasti = PyLong_FromLong(PyFrame_GetLasti(frame));
    if (lasti == NULL) {
        Py_DECREF(id);
        return NULL;
    }
    PyObject *key = PyTuple_Pack(2, id, lasti);
    Py_DECREF(id);
    Py_DECREF(lasti);
    if (key == NULL) {
        return NULL;
    }
    PyObject *hit = PyDict_GetItemWithError(site_cache, key); /* borrowed */
    Py_DECREF(key);
    if (hit != NULL && PyTuple_CheckExact(hit) && PyTuple_GET_SIZE(hit) == 2 &&
        PyTuple_GET_ITEM(hit, 0) == (PyObject *)code) {
        PyObject *site = PyTuple_GET_ITEM(hit, 1);
        Py_INCREF(site);
        return site;
    }
    return NULL;
}

/* The site of the first user frame from `frame` (a reference this takes)
 * outwards: a new reference, None past the outermost frame, NULL on error. */
static PyObject *
site_from_frame(PyFrameObject *frame)
{
    while (frame != NULL) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        PyObject *skip = PyDict_GetItemWithError(skip_file, code->co_filename); /* borrowed */
        if (skip == Py_True) {
            Py_DECREF(code);
            PyFrameObject *back = PyFrame_GetBack(frame);
            Py_DECREF(frame);
            frame = back;
            continue;
        }
        PyObject *site = NULL;
        if (skip == Py_False) {
            site = cached_site(frame, code);
        }
        Py_DECREF(code);
        if (site == NULL && !PyErr_Occurred()) {
            site = PyObject_CallOneArg(site_from, (PyObject *)frame);
        }
        Py_DECREF(frame);
        return site;
    }
    Py_RETURN_NONE;
}

static PyObject *
mod_call_site(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    long depth = 1;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "call_site(depth=1)");
        return NULL;
    }
    if (nargs == 1) {
        depth = PyLong_AsLong(args[0]);
        if (depth == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (site_from == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "call_site: bind_sites() was not called");
        return NULL;
    }
    /* The caller's frame, then `depth` frames further out. */
    PyFrameObject *frame = PyEval_GetFrame();
    Py_XINCREF(frame);
    for (long i = 0; i < depth && frame != NULL; i++) {
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    return site_from_frame(frame);
}

/* frame_site(frame): the site of the first user frame from `frame` outwards
 * (None for None). recorder.hold_end reaches past its tracedsync caller with
 * sys._getframe(n), which makes no frame object for the frames it skips:
 * PyEval_GetFrame and PyFrame_GetBack in call_site make one for each. */
static PyObject *
mod_frame_site(PyObject *Py_UNUSED(module), PyObject *frame)
{
    if (frame == Py_None) {
        Py_RETURN_NONE;
    }
    if (!PyFrame_Check(frame)) {
        PyErr_SetString(PyExc_TypeError, "frame_site(frame): a frame or None");
        return NULL;
    }
    if (site_from == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "frame_site: bind_sites() was not called");
        return NULL;
    }
    Py_INCREF(frame);
    return site_from_frame((PyFrameObject *)frame);
}

/* -- hold records ---------------------------------------------------------------
 *
 * recorder.hold_end's common case in C (the threshold-crossing cost on the
 * application thread: ~0.5 us here against ~1.3 us through hold_end): no
 * waiter blamed on the hold, recording on, an application thread that
 * threading knows, room in the buffer with no wake-up due, and the
 * per-primitive rate limit not reached (checked under recorder._stats_lock,
 * taken without blocking). It reads the recorder's module globals on every
 * call (nothing is mirrored here) and appends exactly the tuple hold_end
 * would. Returns 1 when the record is made, 0 when hold_end must decide
 * (nothing has been done), -1 on an error.
 */
static PyObject *str_recording = NULL;
static PyObject *str_max_spans_per_second = NULL;
static PyObject *str_buffer = NULL;
static PyObject *str_buffer_capacity = NULL;
static PyObject *str_internal = NULL;
static PyObject *str_active_threads = NULL;
static PyObject *str_current_context = NULL;
static PyObject *str_append = NULL;
static PyObject *str_HOLD = NULL;
static PyObject *str_stats_lock = NULL;
static PyObject *str_rl_start = NULL;
static PyObject *str_rl_count = NULL;

/* The names above, interned at import. */
static const struct {
    PyObject **slot;
    const char *text;
} recorder_names[] = {
    {&str_recording, "recording"},
    {&str_max_spans_per_second, "max_spans_per_second"},
    {&str_buffer, "buffer"},
    {&str_buffer_capacity, "buffer_capacity"},
    {&str_internal, "_internal"},
    {&str_active_threads, "_active_threads"},
    {&str_current_context, "_current_context"},
    {&str_append, "append"},
    {&str_HOLD, "HOLD"},
    {&str_stats_lock, "_stats_lock"},
    {&str_rl_start, "rl_start"},
    {&str_rl_count, "rl_count"},
};

/* A borrowed module global of the recorder, NULL (maybe with an error) if absent. */
static inline PyObject *
recorder_global(PyObject *globals, PyObject *name)
{
    return PyDict_GetItemWithError(globals, name);
}

static inline long long
get_ll(PyObject *obj, PyObject *name, int *err)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        *err = 1;
        return 0;
    }
    long long out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (out == -1 && PyErr_Occurred()) {
        *err = 1;
    }
    return out;
}

static inline int
set_ll(PyObject *obj, PyObject *name, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (v == NULL) {
        return -1;
    }
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

/* recorder._allow_span for a span that is allowed: 1 once counted; 0 when the
 * span is over the limit or _stats_lock is busy (nothing changed: hold_end
 * decides, and counts the suppression); -1 on an error. */
static int
allow_span(PyObject *g, PyObject *st, long long now, long long limit)
{
    PyObject *lock = recorder_global(g, str_stats_lock);
    if (lock == NULL || st == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *got = PyObject_CallMethodOneArg(lock, str_acquire, Py_False);
    if (got == NULL) {
        return -1;
    }
    int taken = got == Py_True;
    Py_DECREF(got);
    if (!taken) {
        return 0;
    }
    int err = 0, result = 0;
    long long start = get_ll(st, str_rl_start, &err);
    long long count = err ? 0 : get_ll(st, str_rl_count, &err);
    if (!err) {
        if (now - start >= 1000000000LL) {
            start = now;
            count = 0;
        }
        if (count < limit) {
            if (set_ll(st, str_rl_start, start) < 0 || set_ll(st, str_rl_count, count + 1) < 0) {
                err = 1;
            }
            else {
                result = 1;
            }
        }
    }
    PyObject *released = PyObject_CallMethodNoArgs(lock, str_release);
    if (released == NULL) {
        return -1;
    }
    Py_DECREF(released);
    return err ? -1 : result;
}

static int
record_hold_fast(CoreObject *self, long long t0, long long d)
{
    if (site_from == NULL || (self->blame != NULL && self->blame != Py_None) ||
        self->meta == NULL) {
        return 0;
    }
    PyObject *g = PyModule_GetDict(recorder); /* borrowed */
    if (g == NULL) {
        return -1;
    }
    if (recorder_global(g, str_recording) != Py_True) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *limit = recorder_global(g, str_max_spans_per_second);
    if (limit == NULL || !PyLong_CheckExact(limit)) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int overflow = 0;
    long long limit_v = PyLong_AsLongLongAndOverflow(limit, &overflow);
    if (overflow < 0 || (overflow == 0 && limit_v < 1)) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int limited = overflow == 0 && limit_v < NEVER;
    PyObject *buffer = recorder_global(g, str_buffer);
    PyObject *capacity = recorder_global(g, str_buffer_capacity);
    PyObject *internal = recorder_global(g, str_internal);
    PyObject *threads = recorder_global(g, str_active_threads);
    PyObject *getter = recorder_global(g, str_current_context);
    PyObject *kind = recorder_global(g, str_HOLD);
    if (!buffer || !capacity || !PyLong_CheckExact(capacity) || !internal ||
        !PyAnySet_CheckExact(internal) || !threads || !PyDict_CheckExact(threads) || !getter ||
        !kind) {
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_ssize_t cap = PyLong_AsSsize_t(capacity);
    Py_ssize_t n = PyObject_Length(buffer);
    if (cap == -1 || n == -1) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (!(n < cap - 1 && n != (cap >> 1) - 1)) {
        return 0; /* full, or the append that wakes the pipeline: emit() decides */
    }
    PyObject *me = PyLong_FromUnsignedLong(PyThread_get_thread_ident());
    if (me == NULL) {
        return -1;
    }
    int internal_thread = PySet_Contains(internal, me);
    PyObject *thread = internal_thread ? NULL : PyDict_GetItemWithError(threads, me);
    if (thread == NULL) { /* an internal or unknown thread, or an error */
        Py_DECREF(me);
        return PyErr_Occurred() ? -1 : 0;
    }
    Py_INCREF(thread);
    /* Ours until the end: the getter and a site-cache miss run Python code. */
    Py_INCREF(buffer);
    Py_INCREF(kind);
    if (limited) {
        int allowed = allow_span(g, self->st, t0 + d, limit_v);
        if (allowed <= 0) {
            Py_DECREF(kind);
            Py_DECREF(buffer);
            Py_DECREF(thread);
            Py_DECREF(me);
            return allowed;
        }
    }
    /* From here on the record is counted against the rate limit: made, or an error. */
    int result = -1;
    PyObject *context = NULL, *site = NULL, *pt0 = NULL, *pt1 = NULL, *depth = NULL;
    PyObject *record = NULL, *res = NULL;
    context = PyObject_CallNoArgs(getter);
    if (context == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            goto done;
        }
        PyErr_Clear(); /* hold_end: `except Exception: context = None` */
        context = Py_None;
        Py_INCREF(context);
    }
    PyFrameObject *frame = PyEval_GetFrame();
    Py_XINCREF(frame);
    site = site_from_frame(frame);
    pt0 = PyLong_FromLongLong(t0);
    pt1 = PyLong_FromLongLong(t0 + d);
    depth = PyLong_FromSsize_t(self->depth);
    if (site == NULL || pt0 == NULL || pt1 == NULL || depth == NULL) {
        goto done;
    }
    record = PyTuple_Pack(13, kind, self->meta, me, thread, pt0, pt1, Py_None, context, site,
                          depth, Py_None, Py_None, Py_None);
    if (record == NULL) {
        goto done;
    }
    res = PyObject_CallMethodOneArg(buffer, str_append, record);
    if (res != NULL) {
        result = 1;
    }
done:
    Py_XDECREF(res);
    Py_XDECREF(record);
    Py_XDECREF(depth);
    Py_XDECREF(pt1);
    Py_XDECREF(pt0);
    Py_XDECREF(site);
    Py_XDECREF(context);
    Py_DECREF(kind);
    Py_DECREF(buffer);
    Py_DECREF(thread);
    Py_DECREF(me);
    return result;
}
#endif

/* adopt_methods(cls): cls, a Python subclass of LockCore or RLockCore, gets
 * descriptors of its own for the C methods it inherits unchanged; returns
 * how many. CPython's specialised calls of a C method (3.11+:
 * PRECALL/CALL_NO_KW_METHOD_DESCRIPTOR_*) require type(self) to BE the
 * descriptor's type; an inherited one makes every call of lock.release() or
 * lock.locked() on the subclass take the generic path, about twice as slow
 * (lock.locked(): 49 ns against 23 here). Methods overridden on the way stay
 * as they are. */
static PyObject *
mod_adopt_methods(PyObject *Py_UNUSED(module), PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "adopt_methods() takes a class");
        return NULL;
    }
    PyTypeObject *sub = (PyTypeObject *)cls;
    PyTypeObject *base;
    if (PyType_IsSubtype(sub, &LockCore_Type)) {
        base = &LockCore_Type;
    }
    else if (PyType_IsSubtype(sub, &RLockCore_Type)) {
        base = &RLockCore_Type;
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "adopt_methods() takes a subclass of LockCore or RLockCore");
        return NULL;
    }
    long adopted = 0;
    if (sub == base) {
        return PyLong_FromLong(adopted);
    }
    for (PyMethodDef *m = base->tp_methods; m->ml_name != NULL; m++) {
        /* A method descriptor looked up on a class is the descriptor itself:
         * adopt it when it is this C method, made for another class. */
        PyObject *found = PyObject_GetAttrString(cls, m->ml_name);
        if (found == NULL) {
            return NULL;
        }
        int inherited = Py_IS_TYPE(found, &PyMethodDescr_Type) &&
                        ((PyMethodDescrObject *)found)->d_method == m &&
                        ((PyMethodDescrObject *)found)->d_common.d_type != sub;
        Py_DECREF(found);
        if (!inherited) {
            continue;
        }
        PyObject *descr = PyDescr_NewMethod(sub, m);
        if (descr == NULL) {
            return NULL;
        }
        int r = PyObject_SetAttrString(cls, m->ml_name, descr);
        Py_DECREF(descr);
        if (r < 0) {
            return NULL;
        }
        adopted++;
    }
    return PyLong_FromLong(adopted);
}

static PyMethodDef module_methods[] = {
    {"adopt_methods", mod_adopt_methods, METH_O,
     "adopt_methods(cls): cls's own descriptors for the C methods it inherits (faster calls)"},
    {"_bind", mod_bind, METH_O, "_bind(recorder): where the slow paths live"},
    {"set_hold_threshold", mod_set_hold_threshold, METH_O,
     "set_hold_threshold(ns): holds at least this long go to recorder.hold_end"},
    {"hold_threshold", mod_hold_threshold, METH_NOARGS, "the current hold threshold (ns)"},
    {"monotonic_ns", mod_monotonic_ns, METH_NOARGS, "the clock the hot path reads (ns)"},
#if PY_VERSION_HEX >= 0x030B0000
    {"bind_sites", (PyCFunction)(void (*)(void))mod_bind_sites, METH_FASTCALL,
     "bind_sites(skip_file, site_cache, site_from): the caches call_site reads"},
    {"call_site", (PyCFunction)(void (*)(void))mod_call_site, METH_FASTCALL,
     "call_site(depth=1): (file, line, function) of the first user frame depth frames up"},
    {"frame_site", mod_frame_site, METH_O,
     "frame_site(frame): (file, line, function) of the first user frame from frame outwards"},
#endif
    {"in_main_interpreter", mod_in_main_interpreter, METH_NOARGS,
     "True in the main interpreter (the only one that may use the compiled types)"},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tracedsync._speedups",
    .m_doc = "The compiled hot path of tracedsync.Lock and tracedsync.RLock.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_lock_acquire_slow = PyUnicode_InternFromString("lock_acquire_slow");
    str_rlock_acquire_slow = PyUnicode_InternFromString("rlock_acquire_slow");
    str_hold_end = PyUnicode_InternFromString("hold_end");
#if PY_VERSION_HEX >= 0x030B0000
    for (size_t i = 0; i < sizeof(recorder_names) / sizeof(recorder_names[0]); i++) {
        *recorder_names[i].slot = PyUnicode_InternFromString(recorder_names[i].text);
        if (*recorder_names[i].slot == NULL) {
            return NULL;
        }
    }
#endif
    str_blocking = PyUnicode_InternFromString("blocking");
    str_timeout = PyUnicode_InternFromString("timeout");
    str_acquire = PyUnicode_InternFromString("acquire");
    str_release = PyUnicode_InternFromString("release");
    minus_one = PyLong_FromLong(-1);
    if (!str_lock_acquire_slow || !str_rlock_acquire_slow || !str_hold_end || !str_blocking ||
        !str_timeout || !str_acquire || !str_release || !minus_one) {
        return NULL;
    }
    PyObject *thread = PyImport_ImportModule("_thread");
    if (thread == NULL) {
        return NULL;
    }
    allocate_lock = PyObject_GetAttrString(thread, "allocate_lock");
    Py_DECREF(thread);
    if (allocate_lock == NULL) {
        return NULL;
    }
    if (PyType_Ready(&LockCore_Type) < 0 || PyType_Ready(&RLockCore_Type) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&speedups_module);
    if (m == NULL) {
        return NULL;
    }
    Py_INCREF(&LockCore_Type);
    if (PyModule_AddObject(m, "LockCore", (PyObject *)&LockCore_Type) < 0) {
        Py_DECREF(&LockCore_Type);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&RLockCore_Type);
    if (PyModule_AddObject(m, "RLockCore", (PyObject *)&RLockCore_Type) < 0) {
        Py_DECREF(&RLockCore_Type);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "RAW_BUCKETS", RAW_BUCKETS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
