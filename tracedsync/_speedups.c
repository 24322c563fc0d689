/* tracedsync._speedups: the compiled hot path of tracedsync.Lock and RLock
 * (and of Semaphore and BoundedSemaphore: SemaphoreCore, its own section).
 *
 * LockCore and RLockCore are base types; tracedsync.primitives subclasses
 * them in Python (identity, repr, the Condition protocol) and inherits
 * acquire/__enter__/release/__exit__ from here, so the hot calls run with no
 * Python frame at all.
 *
 * This is exactly the layer the pure-Python PureLock/PureRLock are
 * (tracedsync/primitives.py), and nothing more: on acquire, a non-blocking
 * try of the underlying lock, one clock read, the holder's ident (and, once
 * the lock has been contended, the caller's code object and offset); on
 * release, one clock read, the counters, the release of the underlying lock,
 * then the static hold threshold and the span budget's admission threshold
 * (tracedsync/budget.py) compared. Everything else -- blocking, waiters,
 * records -- is a call into tracedsync.recorder (acquire_slow, hold_end), the
 * one implementation of those rules; tests/test_implementation.py runs one
 * suite over both implementations.
 *
 * The underlying lock is a PyThread_type_lock, the lock _thread.lock is made
 * of, so contention behaves exactly as with threading.Lock. `_try(blocking=
 * True, timeout=-1)` acquires it like CPython's _thread.lock.acquire: it
 * releases the GIL while blocking, wakes on signals, runs pending calls
 * (signal handlers: Ctrl-C raises KeyboardInterrupt) and retries with the
 * remaining timeout. Bad arguments are handed to a fresh _thread.lock's
 * acquire so the error is the running interpreter's own, message included.
 *
 * Only public C API is used (no _PyTime_*: the clock is
 * clock_gettime(CLOCK_MONOTONIC), the one time.monotonic_ns() reads on
 * Linux, so recorder timestamps and ours compare).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <frameobject.h>
#include <pythread.h>
#include <structmember.h>
#include <limits.h>
#include <math.h>
#include <time.h>

#define RAW_BUCKETS 65
#define NEVER (1LL << 62)
#define UNSET_TIMEOUT (-1000000000LL) /* -1 s in ns: "no timeout" */
#define WINDOW_NS 1000000000LL        /* a span budget window: tracedsync/budget.py */

/* Holds at least this long (ns) go to recorder.hold_end (set_hold_threshold). */
static long long hold_ns = NEVER;
/* A blocking acquire first waits this long (ns) here, counting a wait that
 * ends within it itself; past it, or when 0, recorder.acquire_slow takes
 * over (set_wait_threshold). */
static long long wait_ns = 0;

/* tracedsync.recorder (bound by _bind) and interned names. */
static PyObject *recorder = NULL;
static PyObject *str_acquire_slow = NULL;
static PyObject *str_hold_end = NULL;
static PyObject *str_reacquire = NULL;
static PyObject *str_blocking = NULL;
static PyObject *str_timeout = NULL;
static PyObject *str_acquire = NULL;
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
    char track;           /* _track: note acquisition sites (set at first contention) */
    long long t;          /* _t: when the current hold began (ns), 0 if none */
    unsigned long owner;  /* _owner: holding thread's ident, 0 if none */
    long long rt;         /* _rt: when the lock was last released (ns) */
    Py_ssize_t count;     /* _count (RLock): recursion level */
    Py_ssize_t depth;     /* _depth (RLock): deepest level in the current hold */
    unsigned long long reent; /* _reent (RLock) */
    unsigned long long hsum;  /* _hsum */
    unsigned long long hmax;  /* _hmax */
    unsigned long long hsup;  /* _hsup: holds the span budget kept out */
    long long admit;      /* _admit: the budget's admission threshold (ns) */
    long long window;     /* _window: start of the budget's window (ns) */
    PyObject *blame;      /* _blame: None or the span id a waiter reserved */
    PyObject *st;         /* _st: None or counters.SlowStats */
    PyObject *meta;       /* _meta: registry.Identity */
    PyObject *acq_code;   /* with acq_lasti: _acq_at, where the hold was taken */
    int acq_lasti;
    PyObject *weakreflist;
    unsigned long long hhist[RAW_BUCKETS]; /* _hhist */
    /* Waits that ended within the wait threshold in C (call_slow), counted
     * apart from the recorder's SlowStats (which Python updates under
     * registry.stats_lock) and added to them by registry.read_counters. */
    unsigned long long wcont; /* _wcont */
    unsigned long long wsum;  /* _wsum */
    unsigned long long wmax;  /* _wmax */
    unsigned long long *whist; /* _whist: RAW_BUCKETS counts, made at the first such wait */
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

/* acquire(blocking=True, timeout=-1) of a raw lock (`*locked` is its flag),
 * exactly like _thread.lock.acquire. */
static PyObject *
raw_acquire(PyThread_type_lock lock, char *locked, PyObject *const *args, Py_ssize_t nargs,
            PyObject *kwnames)
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
    PyLockStatus r = acquire_timed(lock, timeout);
    if (r == PY_LOCK_INTR) {
        return NULL;
    }
    if (r == PY_LOCK_ACQUIRED) {
        *locked = 1;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;

stdlib:
    if (raise_like_stdlib(args, nargs, kwnames) == 0) {
        PyErr_SetString(PyExc_ValueError, "unsupported acquire() arguments");
    }
    return NULL;
}

/* _try(blocking=True, timeout=-1): acquire the underlying lock, exactly like
 * _thread.lock.acquire. The recorder's slow path blocks through this. */
static PyObject *
core_try(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return raw_acquire(self->lock, &self->locked, args, nargs, kwnames);
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

/* -- the hot path ---------------------------------------------------------- */

/* Note where the caller took the lock: its code object and offset. */
static inline void
note_site(CoreObject *self)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    if (frame == NULL) {
        return;
    }
    PyCodeObject *code = PyFrame_GetCode(frame); /* new reference */
#if PY_VERSION_HEX >= 0x030B0000
    self->acq_lasti = PyFrame_GetLasti(frame);
#else
    self->acq_lasti = frame->f_lasti < 0 ? -1 : frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
    Py_XSETREF(self->acq_code, (PyObject *)code);
}

static inline void
taken(CoreObject *self, unsigned long me)
{
    self->t = now_ns();
    self->owner = me;
    if (self->track) {
        note_site(self);
    }
}

/* Check (blocking, timeout) like the stdlib when they are not the defaults.
 * Returns 1 for the defaults, 0 for other valid arguments, -1 with the
 * stdlib's error set. */
static int
check_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **blocking,
           PyObject **timeout)
{
    *blocking = NULL;
    *timeout = NULL;
    if (!nargs && !kwnames) {
        return 1;
    }
    if (split_args(args, nargs, kwnames, blocking, timeout) < 0) {
        if (raise_like_stdlib(args, nargs, kwnames) == 0) {
            PyErr_SetString(PyExc_TypeError, "unsupported acquire() arguments");
        }
        return -1;
    }
    if (is_default_timeout(*timeout) &&
        (*blocking == NULL || *blocking == Py_True || *blocking == Py_False)) {
        return *blocking == Py_False ? 0 : 1;
    }
    return raise_like_stdlib(args, nargs, kwnames) < 0 ? -1 : 0;
}

static PyTypeObject RLockCore_Type;

/* A wait that ended within the wait threshold: counted here (no record is
 * made for it). 0, or -1 with MemoryError set (the lock is held then). */
static int
count_short_wait(CoreObject *self, long long wait)
{
    if (self->whist == NULL) {
        self->whist = PyMem_Calloc(RAW_BUCKETS, sizeof(unsigned long long));
        if (self->whist == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    unsigned long long w = wait > 0 ? (unsigned long long)wait : 0;
    self->wcont++;
    self->wsum += w;
    if (w > self->wmax) {
        self->wmax = w;
    }
    self->whist[bit_length(w)]++;
    return 0;
}

/* The try failed. A default blocking acquire first waits up to wait_ns here,
 * as recorder._block's first phase does: most contended waits end there and
 * need no Python. Past it, recorder.acquire_slow(self, blocking, timeout,
 * t0) goes on with the wait begun at t0 (else with t0 None). */
static PyObject *
call_slow(CoreObject *self, PyObject *blocking, PyObject *timeout)
{
    if (recorder == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "tracedsync._speedups is not bound to the recorder");
        return NULL;
    }
    PyObject *began = Py_None;
    Py_INCREF(began);
    if (wait_ns > 0 && (blocking == NULL || blocking == Py_True) && is_default_timeout(timeout)) {
        long long t0 = now_ns();
        PyLockStatus r = acquire_timed(self->lock, wait_ns);
        if (r == PY_LOCK_INTR) {
            Py_DECREF(began);
            return NULL;
        }
        if (r == PY_LOCK_ACQUIRED) {
            Py_DECREF(began);
            self->locked = 1;
            self->track = 1; /* contended: from now on acquisitions note their site */
            if (PyObject_TypeCheck((PyObject *)self, &RLockCore_Type)) {
                self->count = 1;
                self->depth = 1;
            }
            taken(self, PyThread_get_thread_ident());
            if (count_short_wait(self, self->t - t0) < 0) {
                PyErr_Clear(); /* the wait goes uncounted; the lock is taken */
            }
            Py_RETURN_TRUE;
        }
        Py_SETREF(began, PyLong_FromLongLong(t0));
        if (began == NULL) {
            return NULL;
        }
    }
    PyObject *fn = PyObject_GetAttr(recorder, str_acquire_slow);
    if (fn == NULL) {
        Py_DECREF(began);
        return NULL;
    }
    PyObject *argv[4] = {(PyObject *)self, blocking ? blocking : Py_True,
                         timeout ? timeout : minus_one, began};
    PyObject *res = PyObject_Vectorcall(fn, argv, 4, NULL);
    Py_DECREF(fn);
    Py_DECREF(began);
    return res;
}

/* After the underlying lock was released: recorder.hold_end(self, t0, now,
 * blame, depth) when a waiter reserved the hold's span id (blame), or when
 * the hold crossed the hold threshold and the budget admits it; else a hold
 * the budget keeps out is counted. Steals `blame`. NULL only when hold_end
 * raised what is not an Exception (KeyboardInterrupt): the lock is released
 * already, the exception propagates. */
static PyObject *
after_release(CoreObject *self, long long t0, long long now, PyObject *blame, Py_ssize_t depth)
{
    long long d = now - t0;
    if (blame == Py_None) {
        if (d < hold_ns) {
            Py_DECREF(blame);
            Py_RETURN_NONE;
        }
        if (!(d > self->admit || now - self->window >= WINDOW_NS)) {
            self->hsup++;
            Py_DECREF(blame);
            Py_RETURN_NONE;
        }
    }
    PyObject *res = NULL;
    PyObject *fn = recorder ? PyObject_GetAttr(recorder, str_hold_end) : NULL;
    if (fn != NULL) {
        PyObject *pt0 = PyLong_FromLongLong(t0);
        PyObject *pnow = PyLong_FromLongLong(now);
        PyObject *pdepth = PyLong_FromSsize_t(depth);
        if (pt0 != NULL && pnow != NULL && pdepth != NULL) {
            PyObject *argv[5] = {(PyObject *)self, pt0, pnow, blame, pdepth};
            res = PyObject_Vectorcall(fn, argv, 5, NULL);
        }
        Py_XDECREF(pt0);
        Py_XDECREF(pnow);
        Py_XDECREF(pdepth);
        Py_DECREF(fn);
    }
    Py_DECREF(blame);
    if (res != NULL) {
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) {
        return NULL;
    }
    PyErr_Clear();
    Py_RETURN_NONE;
}

/* End the current hold and release the underlying lock (held: t0 != 0). */
static PyObject *
end_hold(CoreObject *self, long long t0, Py_ssize_t depth)
{
    self->t = 0; /* first: the histogram counts this hold from here on */
    long long now = now_ns();
    long long d = now - t0;
    if (d < 0) {
        d = 0;
        now = t0;
    }
    self->hsum += (unsigned long long)d;
    self->hhist[bit_length((unsigned long long)d)]++;
    if ((unsigned long long)d > self->hmax) {
        self->hmax = (unsigned long long)d;
    }
    PyObject *blame = self->blame; /* ours now */
    Py_INCREF(Py_None);
    self->blame = Py_None;
    self->rt = now;
    self->owner = 0;
    self->locked = 0;
    PyThread_release_lock(self->lock);
    return after_release(self, t0, now, blame, depth);
}

/* -- Lock ------------------------------------------------------------------ */

static PyObject *
lock_acquire(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking, *timeout;
    if (check_args(args, nargs, kwnames, &blocking, &timeout) < 0) {
        return NULL;
    }
    if (try_now(self)) {
        taken(self, PyThread_get_thread_ident());
        Py_RETURN_TRUE;
    }
    return call_slow(self, blocking, timeout);
}

static PyObject *
lock_enter(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (try_now(self)) {
        taken(self, PyThread_get_thread_ident());
        Py_RETURN_TRUE;
    }
    return call_slow(self, NULL, NULL);
}

static PyObject *
lock_release(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    long long t0 = self->t;
    if (t0 && self->locked) {
        return end_hold(self, t0, 0);
    }
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    self->locked = 0;
    self->owner = 0;
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
rlock_acquire_valid(CoreObject *self, PyObject *blocking, PyObject *timeout)
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
        self->count = 1;
        self->depth = 1;
        taken(self, me);
        Py_RETURN_TRUE;
    }
    return call_slow(self, blocking, timeout);
}

static PyObject *
rlock_acquire(CoreObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking, *timeout;
    if (check_args(args, nargs, kwnames, &blocking, &timeout) < 0) {
        return NULL;
    }
    return rlock_acquire_valid(self, blocking, timeout);
}

static PyObject *
rlock_enter(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return rlock_acquire_valid(self, NULL, NULL);
}

static PyObject *
rlock_release(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->owner != PyThread_get_thread_ident() || self->count < 1) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    if (--self->count > 0) {
        Py_RETURN_NONE;
    }
    long long t0 = self->t;
    if (t0 && self->locked) {
        return end_hold(self, t0, self->depth);
    }
    self->owner = 0;
    if (self->locked) {
        self->locked = 0;
        PyThread_release_lock(self->lock);
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

/* -- Condition.wait: give the lock up, take it back ------------------------ */

/* What primitives._OwnedAPI._give_up does (the Python reference, used by the
 * pure implementation): the hold goes on across the wait, so nothing is
 * counted; a waiter that reserved the hold's span id (blame) gets that hold's
 * record now. Sets *held to the ns held so far. 0, or -1 with an error set. */
static int
give_up(CoreObject *self, Py_ssize_t depth, long long *held)
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return -1;
    }
    long long t0 = self->t;
    long long now = now_ns();
    *held = t0 ? now - t0 : 0;
    PyObject *blame = self->blame; /* ours now */
    Py_INCREF(Py_None);
    self->blame = Py_None;
    self->t = 0;
    self->rt = now; /* a waiter's hand-off is measured from here */
    self->owner = 0;
    self->locked = 0;
    PyThread_release_lock(self->lock);
    if (blame == Py_None || blame == NULL) {
        Py_XDECREF(blame);
        return 0;
    }
    PyObject *res = after_release(self, t0, now, blame, depth);
    if (res == NULL) {
        return -1;
    }
    Py_DECREF(res);
    return 0;
}

/* What primitives._OwnedAPI._take_back does: take the lock again (blocking
 * as a lock wait through recorder.reacquire when it must); the hold goes on
 * from `held`. 0, or -1 with an error set. */
static int
take_back(CoreObject *self, long long held)
{
    if (!try_now(self)) {
        if (recorder == NULL) {
            PyErr_SetString(PyExc_RuntimeError,
                            "tracedsync._speedups is not bound to the recorder");
            return -1;
        }
        PyObject *res = PyObject_CallMethodOneArg(recorder, str_reacquire, (PyObject *)self);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    self->t = now_ns() - held;
    return 0;
}

/* The ns a saved state gives (an int; anything else, 0). */
static long long
held_of(PyObject *state)
{
    if (!PyLong_Check(state)) {
        return 0;
    }
    long long held = PyLong_AsLongLong(state);
    if (held == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return held;
}

static PyObject *
lock_release_save(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    long long held;
    if (give_up(self, 0, &held) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(held);
}

static PyObject *
lock_acquire_restore(CoreObject *self, PyObject *state)
{
    if (take_back(self, held_of(state)) < 0) {
        return NULL;
    }
    self->owner = PyThread_get_thread_ident();
    Py_RETURN_NONE;
}

static PyObject *
rlock_release_save(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t count = self->count;
    if (count == 0) {
        PyErr_SetString(PyExc_RuntimeError, "cannot release un-acquired lock");
        return NULL;
    }
    unsigned long owner = self->owner;
    long long held;
    self->count = 0;
    if (give_up(self, self->depth, &held) < 0) {
        return NULL;
    }
    return Py_BuildValue("(nkL)", count, owner, held);
}

static PyObject *
rlock_acquire_restore(CoreObject *self, PyObject *state)
{
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) < 2) {
        PyErr_SetString(PyExc_TypeError, "_acquire_restore() takes a _release_save() state");
        return NULL;
    }
    Py_ssize_t count = PyLong_AsSsize_t(PyTuple_GET_ITEM(state, 0));
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    unsigned long owner = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(state, 1));
    if (owner == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    long long held = PyTuple_GET_SIZE(state) > 2 ? held_of(PyTuple_GET_ITEM(state, 2)) : 0;
    if (take_back(self, held) < 0) {
        return NULL;
    }
    self->count = count;
    self->owner = owner; /* last: a waiter that sees it sees the rest */
    Py_RETURN_NONE;
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

/* _used(): counted something on the hot path (a hold, one under way, a wait). */
static PyObject *
core_used(CoreObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->hsum != 0 || self->t != 0 || self->wcont != 0);
}

/* A copy of RAW_BUCKETS counts as a list of ints. */
static PyObject *
counts_list(const unsigned long long *counts)
{
    PyObject *list = PyList_New(RAW_BUCKETS);
    if (list == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < RAW_BUCKETS; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(counts[i]);
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *
core_hhist(CoreObject *self, void *Py_UNUSED(closure))
{
    return counts_list(self->hhist);
}

static PyObject *
core_whist(CoreObject *self, void *Py_UNUSED(closure))
{
    if (self->whist == NULL) {
        Py_RETURN_NONE;
    }
    return counts_list(self->whist);
}

static PyObject *
core_get_acq_at(CoreObject *self, void *Py_UNUSED(closure))
{
    if (self->acq_code == NULL) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(Oi)", self->acq_code, self->acq_lasti);
}

static int
core_set_acq_at(CoreObject *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL || value == Py_None) {
        Py_CLEAR(self->acq_code);
        return 0;
    }
    PyObject *code;
    int lasti;
    if (!PyTuple_Check(value) || !PyArg_ParseTuple(value, "O!i", &PyCode_Type, &code, &lasti)) {
        PyErr_SetString(PyExc_TypeError, "_acq_at: None or (code, offset)");
        return -1;
    }
    Py_INCREF(code);
    Py_XSETREF(self->acq_code, code);
    self->acq_lasti = lasti;
    return 0;
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
    Py_INCREF(Py_None);
    self->st = Py_None;
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
    Py_CLEAR(self->acq_code);
    PyMem_Free(self->whist);
    self->whist = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define COMMON_MEMBERS                                                                   \
    {"_t", T_LONGLONG, offsetof(CoreObject, t), 0, NULL},                                \
    {"_owner", T_ULONG, offsetof(CoreObject, owner), 0, NULL},                           \
    {"_rt", T_LONGLONG, offsetof(CoreObject, rt), 0, NULL},                              \
    {"_track", T_BOOL, offsetof(CoreObject, track), 0, NULL},                            \
    {"_hsum", T_ULONGLONG, offsetof(CoreObject, hsum), 0, NULL},                         \
    {"_hmax", T_ULONGLONG, offsetof(CoreObject, hmax), 0, NULL},                         \
    {"_wcont", T_ULONGLONG, offsetof(CoreObject, wcont), READONLY, NULL},                \
    {"_wsum", T_ULONGLONG, offsetof(CoreObject, wsum), READONLY, NULL},                  \
    {"_wmax", T_ULONGLONG, offsetof(CoreObject, wmax), READONLY, NULL},                  \
    {"_hsup", T_ULONGLONG, offsetof(CoreObject, hsup), 0, NULL},                         \
    {"_admit", T_LONGLONG, offsetof(CoreObject, admit), 0, NULL},                        \
    {"_window", T_LONGLONG, offsetof(CoreObject, window), 0, NULL},                      \
    {"_blame", T_OBJECT, offsetof(CoreObject, blame), 0, NULL},                          \
    {"_st", T_OBJECT, offsetof(CoreObject, st), 0, NULL},                                \
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
    {"_whist", (getter)core_whist, NULL,
     "raw histogram of the waits counted in C (a copy), or None", NULL},
    {"_acq_at", (getter)core_get_acq_at, (setter)core_set_acq_at,
     "(code, offset) where the current hold was taken, or None", NULL},
    {NULL},
};

#define COMMON_METHODS                                                                   \
    {"_try", (PyCFunction)(void (*)(void))core_try, METH_FASTCALL | METH_KEYWORDS,       \
     "acquire the underlying lock like _thread.lock.acquire"},                           \
    {"_rel", (PyCFunction)core_rel, METH_NOARGS, "release the underlying lock"},         \
    {"_used", (PyCFunction)core_used, METH_NOARGS, "counted anything on the hot path"},  \
    {"_at_fork_reinit", (PyCFunction)core_at_fork_reinit, METH_NOARGS, NULL}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "release the lock"},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, NULL},
    {"locked", (PyCFunction)lock_locked, METH_NOARGS, "True if the lock is held"},
    {"_is_owned", (PyCFunction)lock_locked, METH_NOARGS, NULL},
    {"_release_save", (PyCFunction)lock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)lock_acquire_restore, METH_O, NULL},
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
    {"_release_save", (PyCFunction)rlock_release_save, METH_NOARGS, NULL},
    {"_acquire_restore", (PyCFunction)rlock_acquire_restore, METH_O, NULL},
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

/* -- Semaphore and BoundedSemaphore ----------------------------------------- */

/* SemaphoreCore is the layer of tracedsync.primitives.PureSemaphore in C:
 * its acquire takes a unit under a raw mutex and notes the hold (thread
 * ident, clock reading, the caller's code object and offset, and the
 * caller's Thread, so permits a thread leaked are still named after it has
 * ended); its release gives units back, pairs each with a hold (this
 * thread's latest, else the oldest outstanding one), counts the holds and
 * hands those past the hold threshold that the span budget admits to
 * recorder.hold_end. A semaphore made with value 0 is a signal: no holds.
 *
 * Blocking is the Python subclass's `_block` (a stdlib Condition over the
 * same mutex, made when a thread first must wait): the mutex is a Mutex
 * object, a lock with _thread.lock's interface that the Condition takes,
 * and `_take` is the unit taken under it. The holds are a C array in the
 * order they were taken (oldest first), each holding its code object and
 * Thread; `_holders()` turns them into Python objects when a wait, a
 * finding or a report asks. */

#define MAX_HOLDS_PER_THREAD 1024 /* primitives._MAX_HOLDS_PER_THREAD */
/* A compiled semaphore counts in a long long: tracedsync.primitives makes
 * the pure-Python one for an initial value past it (or not an int), and a
 * release past it raises OverflowError. */
#define SEMAPHORE_VALUE_MAX LLONG_MAX

typedef struct {
    PyObject_HEAD
    PyThread_type_lock lock;
    char locked;
} MutexObject;

static PyTypeObject Mutex_Type;

static PyObject *
mutex_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    MutexObject *self = (MutexObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->lock = PyThread_allocate_lock();
    if (self->lock == NULL) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_MemoryError, "cannot allocate lock");
        return NULL;
    }
    return (PyObject *)self;
}

static void
mutex_dealloc(MutexObject *self)
{
    if (self->lock != NULL) {
        if (self->locked) {
            PyThread_release_lock(self->lock);
        }
        PyThread_free_lock(self->lock);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Block until the mutex is ours (the GIL released meanwhile). -1 with the
 * exception a signal handler raised. */
static inline int
mutex_lock(MutexObject *m)
{
    if (PyThread_acquire_lock_timed(m->lock, 0, 0) != PY_LOCK_ACQUIRED &&
        acquire_timed(m->lock, -1) != PY_LOCK_ACQUIRED) {
        return -1;
    }
    m->locked = 1;
    return 0;
}

static inline void
mutex_unlock(MutexObject *m)
{
    m->locked = 0;
    PyThread_release_lock(m->lock);
}

static PyObject *
mutex_acquire(MutexObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return raw_acquire(self->lock, &self->locked, args, nargs, kwnames);
}

static PyObject *
mutex_enter(MutexObject *self, PyObject *Py_UNUSED(ignored))
{
    if (mutex_lock(self) < 0) {
        return NULL;
    }
    Py_RETURN_TRUE;
}

static PyObject *
mutex_release(MutexObject *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->locked) {
        PyErr_SetString(PyExc_RuntimeError, "release unlocked lock");
        return NULL;
    }
    mutex_unlock(self);
    Py_RETURN_NONE;
}

static PyObject *
mutex_exit(MutexObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return mutex_release(self, NULL);
}

static PyObject *
mutex_locked(MutexObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->locked);
}

static PyMethodDef mutex_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))mutex_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=-1) -> bool"},
    {"__enter__", (PyCFunction)mutex_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)mutex_release, METH_NOARGS, "release the lock"},
    {"__exit__", (PyCFunction)(void (*)(void))mutex_exit, METH_FASTCALL, NULL},
    {"locked", (PyCFunction)mutex_locked, METH_NOARGS, "True if the lock is held"},
    {NULL},
};

static PyTypeObject Mutex_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._speedups.Mutex",
    .tp_basicsize = sizeof(MutexObject),
    .tp_dealloc = (destructor)mutex_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled semaphore's mutex: a raw lock, as _thread.lock.",
    .tp_methods = mutex_methods,
    .tp_new = mutex_new,
};

/* One outstanding acquisition. */
typedef struct {
    unsigned long ident;
    long long since;
    PyObject *code;   /* the caller's code object, or NULL */
    int offset;
    PyObject *thread; /* the Thread it ran as, or None */
} HoldEntry;

typedef struct {
    PyObject_HEAD
    MutexObject *mutex; /* _mutex */
    long long value;    /* _value */
    long long initial;  /* _initial_value: 0 makes it a signal (no holds) */
    Py_ssize_t nwait;   /* _nwait: threads in _block */
    char bounded;       /* a BoundedSemaphore: release past the initial value raises */
    char track;         /* _track (the recorder sets it; sites are always noted) */
    unsigned long long acq;  /* _acq */
    unsigned long long wblock; /* _wblock: failed non-blocking tries */
    unsigned long long hsum; /* _hsum */
    unsigned long long hmax; /* _hmax */
    unsigned long long hsup; /* _hsup */
    long long admit;         /* _admit */
    long long window;        /* _window */
    PyObject *blame;         /* _blame */
    PyObject *st;            /* _st */
    PyObject *meta;          /* _meta */
    PyObject *cond;          /* _cond: None until a thread first blocks */
    HoldEntry *holds;        /* oldest first */
    Py_ssize_t nholds;
    Py_ssize_t cap;
    PyObject *weakreflist;
    unsigned long long hhist[RAW_BUCKETS]; /* _hhist */
} SemObject;

static PyTypeObject SemaphoreCore_Type;

/* threading._active (tracedsync._threads.active), set by bind_threads. */
static PyObject *active_threads = NULL;
static PyObject *str_block = NULL;
static PyObject *str_notify = NULL;
static PyObject *str_check_acquire = NULL;
static PyObject *str_check_release = NULL;
static PyObject *str_n = NULL;
static PyObject *zero = NULL;
static PyObject *one = NULL;

/* The caller's code object (new reference, or NULL with no frame) and
 * offset, as frame.f_code and frame.f_lasti read them. */
static inline void
caller_site(PyObject **code, int *offset)
{
    PyFrameObject *frame = PyEval_GetFrame(); /* borrowed */
    *code = NULL;
    *offset = -1;
    if (frame == NULL) {
        return;
    }
    *code = (PyObject *)PyFrame_GetCode(frame);
#if PY_VERSION_HEX >= 0x030B0000
    *offset = PyFrame_GetLasti(frame);
#else
    *offset = frame->f_lasti < 0 ? -1 : frame->f_lasti * (int)sizeof(_Py_CODEUNIT);
#endif
}

/* The Thread running as `ident` (_threads.active.get(ident)): a new
 * reference, None when there is none; NULL with an error set. */
static PyObject *
thread_of(unsigned long ident)
{
    if (active_threads == NULL) {
        Py_RETURN_NONE;
    }
    PyObject *key = PyLong_FromUnsignedLong(ident);
    if (key == NULL) {
        return NULL;
    }
    PyObject *thread;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyDict_GetItemRef(active_threads, key, &thread) < 0) {
        Py_DECREF(key);
        return NULL;
    }
#else
    thread = PyDict_GetItemWithError(active_threads, key);
    if (thread == NULL && PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    Py_XINCREF(thread);
#endif
    Py_DECREF(key);
    if (thread == NULL) {
        Py_RETURN_NONE;
    }
    return thread;
}

/* Room for one more hold (under the mutex: no Python runs). -1 with
 * MemoryError set. */
static int
reserve_hold(SemObject *self)
{
    if (self->nholds < self->cap) {
        return 0;
    }
    Py_ssize_t cap = self->cap ? self->cap * 2 : 4;
    HoldEntry *holds = PyMem_Realloc(self->holds, (size_t)cap * sizeof(HoldEntry));
    if (holds == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->holds = holds;
    self->cap = cap;
    return 0;
}

static inline void
remove_hold(SemObject *self, Py_ssize_t i)
{
    self->nholds--;
    memmove(&self->holds[i], &self->holds[i + 1],
            (size_t)(self->nholds - i) * sizeof(HoldEntry));
}

/* A unit was taken under the mutex (room reserved): note the hold, taking
 * over the references to code and thread. When this thread has
 * MAX_HOLDS_PER_THREAD outstanding already its oldest is dropped into
 * *dropped (the caller lets go of its references once the mutex is free;
 * dropped->code and ->thread stay NULL otherwise). Returns the hold's start. */
static long long
note_hold(SemObject *self, unsigned long me, PyObject *code, int offset, PyObject *thread,
          HoldEntry *dropped)
{
    long long now = now_ns();
    self->acq++;
    if (self->nholds >= MAX_HOLDS_PER_THREAD) {
        Py_ssize_t mine = 0, first = -1;
        for (Py_ssize_t i = 0; i < self->nholds; i++) {
            if (self->holds[i].ident == me) {
                if (first < 0) {
                    first = i;
                }
                mine++;
            }
        }
        if (mine >= MAX_HOLDS_PER_THREAD) {
            *dropped = self->holds[first];
            remove_hold(self, first);
        }
    }
    HoldEntry *e = &self->holds[self->nholds++];
    e->ident = me;
    e->since = now;
    e->code = code;
    e->offset = offset;
    e->thread = thread;
    return now;
}

static inline void
let_go(HoldEntry *e)
{
    Py_CLEAR(e->code);
    Py_CLEAR(e->thread);
}

/* What the Python signature of `acquire(self, blocking=True, timeout=None)`
 * or `release(self, n=1)` raises for arguments that do not fit it (the
 * subclass's _signature_acquire, _signature_release). Always NULL. */
static PyObject *
sem_bad_args(SemObject *self, PyObject *signature, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *check = PyObject_GetAttr((PyObject *)self, signature);
    if (check == NULL) {
        return NULL;
    }
    PyObject *res = PyObject_Vectorcall(check, args, nargs, kwnames);
    Py_DECREF(check);
    if (res != NULL) {
        Py_DECREF(res);
        PyErr_SetString(PyExc_TypeError, "unsupported arguments");
    }
    return NULL;
}

/* acquire(blocking, timeout) with the arguments checked (timeout NULL for
 * None): a unit taken at once, else a failed try counted, else _block. */
static PyObject *
sem_take(SemObject *self, int blocking, PyObject *timeout)
{
    unsigned long me = 0;
    PyObject *code = NULL, *thread = NULL;
    int offset = -1;
    int signal = self->initial == 0;
    if (!signal) {
        me = PyThread_get_thread_ident();
        thread = thread_of(me);
        if (thread == NULL) {
            return NULL;
        }
        caller_site(&code, &offset);
    }
    if (mutex_lock(self->mutex) < 0) {
        goto error;
    }
    if (self->value > 0) {
        HoldEntry dropped = {0, 0, NULL, -1, NULL};
        if (signal) {
            self->acq++;
        }
        else {
            if (reserve_hold(self) < 0) {
                mutex_unlock(self->mutex);
                goto error;
            }
            note_hold(self, me, code, offset, thread, &dropped);
        }
        self->value--;
        mutex_unlock(self->mutex);
        let_go(&dropped);
        Py_RETURN_TRUE;
    }
    mutex_unlock(self->mutex);
    Py_CLEAR(thread);
    if (blocking && timeout != NULL) {
        int expired = PyObject_RichCompareBool(timeout, zero, Py_LE);
        if (expired < 0) {
            goto error;
        }
        if (expired) {
            blocking = 0;
        }
    }
    if (!blocking) {
        /* A failed try: counted here (recorder.count_would_block counts the
         * pure one's in _st), added by registry.read_counters. */
        Py_XDECREF(code);
        self->wblock++;
        Py_RETURN_FALSE;
    }
    if (code == NULL) {
        caller_site(&code, &offset);
    }
    PyObject *poffset = PyLong_FromLong(offset);
    if (poffset == NULL) {
        goto error;
    }
    PyObject *argv[4] = {(PyObject *)self, timeout ? timeout : Py_None, code ? code : Py_None,
                         poffset};
    PyObject *res = PyObject_VectorcallMethod(str_block, argv,
                                              4, NULL);
    Py_DECREF(poffset);
    Py_XDECREF(code);
    return res;

error:
    Py_XDECREF(code);
    Py_XDECREF(thread);
    return NULL;
}

static PyObject *
sem_acquire(SemObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *blocking_obj = NULL, *timeout = NULL;
    int blocking = 1;
    if (nargs || kwnames) {
        if (split_args(args, nargs, kwnames, &blocking_obj, &timeout) < 0) {
            return sem_bad_args(self, str_check_acquire, args, nargs, kwnames);
        }
        if (blocking_obj != NULL && (blocking = PyObject_IsTrue(blocking_obj)) < 0) {
            return NULL;
        }
        if (timeout == Py_None) {
            timeout = NULL;
        }
        if (!blocking && timeout != NULL) {
            PyErr_SetString(PyExc_ValueError, "can't specify timeout for non-blocking acquire");
            return NULL;
        }
    }
    return sem_take(self, blocking, timeout);
}

static PyObject *
sem_enter(SemObject *self, PyObject *Py_UNUSED(ignored))
{
    return sem_take(self, 1, NULL);
}

/* _take(code, offset): the unit _block takes once it may (the caller holds
 * the mutex); returns the hold's start, which is also the end of the wait
 * (one clock reading: in a timeline the hold never starts before the wait
 * ends). */
static PyObject *
sem_take_locked(SemObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyLong_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "_take(code, offset: int)");
        return NULL;
    }
    if (self->value <= 0) {
        PyErr_SetString(PyExc_RuntimeError, "_take() with no unit left");
        return NULL;
    }
    long long start;
    if (self->initial == 0) {
        self->acq++;
        start = now_ns();
    }
    else {
        long loffset = PyLong_AsLong(args[1]);
        if (loffset == -1 && PyErr_Occurred()) {
            return NULL;
        }
        int offset = loffset < INT_MIN || loffset > INT_MAX ? -1 : (int)loffset;
        unsigned long me = PyThread_get_thread_ident();
        PyObject *thread = thread_of(me);
        if (thread == NULL) {
            return NULL;
        }
        if (reserve_hold(self) < 0) {
            Py_DECREF(thread);
            return NULL;
        }
        PyObject *code = PyCode_Check(args[0]) ? args[0] : NULL;
        Py_XINCREF(code);
        HoldEntry dropped = {0, 0, NULL, -1, NULL};
        start = note_hold(self, me, code, offset, thread, &dropped);
        let_go(&dropped); /* a Thread and a code object: no finalizer of ours runs */
    }
    self->value--;
    return PyLong_FromLongLong(start);
}

/* recorder.hold_end(self, t0, now, None, 0), after the mutex is free. -1
 * only when it raised what is not an Exception (KeyboardInterrupt). */
static int
sem_hold_end(SemObject *self, long long t0, long long now)
{
    PyObject *res = NULL;
    PyObject *fn = recorder ? PyObject_GetAttr(recorder, str_hold_end) : NULL;
    if (fn != NULL) {
        PyObject *pt0 = PyLong_FromLongLong(t0);
        PyObject *pnow = PyLong_FromLongLong(now);
        PyObject *pdepth = PyLong_FromLong(0);
        if (pt0 != NULL && pnow != NULL && pdepth != NULL) {
            PyObject *argv[5] = {(PyObject *)self, pt0, pnow, Py_None, pdepth};
            res = PyObject_Vectorcall(fn, argv, 5, NULL);
        }
        Py_XDECREF(pt0);
        Py_XDECREF(pnow);
        Py_XDECREF(pdepth);
        Py_DECREF(fn);
    }
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyErr_Clear();
    return 0;
}

/* release(n=1): give back n units, waking up to n waiters. */
static PyObject *
sem_release_n(SemObject *self, PyObject *n_obj)
{
    long long n = 1;
    if (n_obj != one) {
        int small = PyObject_RichCompareBool(n_obj, one, Py_LT);
        if (small < 0) {
            return NULL;
        }
        if (small) {
            PyErr_SetString(PyExc_ValueError, "n must be one or more");
            return NULL;
        }
        PyObject *index = PyNumber_Index(n_obj);
        if (index == NULL) {
            return NULL;
        }
        int overflow = 0;
        n = PyLong_AsLongLongAndOverflow(index, &overflow);
        Py_DECREF(index);
        if (n == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError, "semaphore value too large");
            return NULL;
        }
    }
    /* The holds this release ends (their references are let go of once the
     * mutex is free), and those that go to the recorder. */
    HoldEntry local[8];
    HoldEntry *ended = local;
    Py_ssize_t nended = 0;
    if (mutex_lock(self->mutex) < 0) {
        return NULL;
    }
    if (self->bounded && n > self->initial - self->value) {
        mutex_unlock(self->mutex);
        PyErr_SetString(PyExc_ValueError, "Semaphore released too many times");
        return NULL;
    }
    if (n > SEMAPHORE_VALUE_MAX - self->value) {
        mutex_unlock(self->mutex);
        PyErr_SetString(PyExc_OverflowError, "semaphore value too large");
        return NULL;
    }
    Py_ssize_t pairs = self->nholds < n ? self->nholds : (Py_ssize_t)n;
    if (pairs > (Py_ssize_t)(sizeof(local) / sizeof(local[0]))) {
        ended = PyMem_Malloc((size_t)pairs * sizeof(HoldEntry));
        if (ended == NULL) {
            mutex_unlock(self->mutex);
            return PyErr_NoMemory();
        }
    }
    self->value += n;
    long long now = now_ns();
    unsigned long me = PyThread_get_thread_ident();
    for (Py_ssize_t k = 0; k < pairs; k++) {
        /* This thread's latest hold, else (released by another thread) the
         * oldest outstanding one. */
        Py_ssize_t i = self->nholds - 1;
        while (i >= 0 && self->holds[i].ident != me) {
            i--;
        }
        if (i < 0) {
            i = 0;
        }
        HoldEntry e = self->holds[i];
        remove_hold(self, i);
        long long d = now - e.since;
        if (d < 0) {
            d = 0;
        }
        self->hsum += (unsigned long long)d;
        self->hhist[bit_length((unsigned long long)d)]++;
        if ((unsigned long long)d > self->hmax) {
            self->hmax = (unsigned long long)d;
        }
        ended[nended++] = e;
    }
    PyObject *cond = NULL;
    if (self->nwait && self->cond != NULL && self->cond != Py_None) {
        cond = self->cond;
        Py_INCREF(cond);
    }
    PyObject *err = NULL;
    if (cond != NULL) {
        /* The stdlib Condition notifies under its lock: the mutex, ours. */
        PyObject *pn = n_obj == one ? (Py_INCREF(one), one) : PyLong_FromLongLong(n);
        PyObject *res = pn ? PyObject_CallMethodOneArg(cond, str_notify, pn) : NULL;
        Py_XDECREF(pn);
        Py_DECREF(cond);
        if (res == NULL) {
            err = Py_None; /* an error is set */
        }
        Py_XDECREF(res);
    }
    mutex_unlock(self->mutex);
    PyObject *result = Py_None;
    if (err != NULL) {
        result = NULL;
    }
    for (Py_ssize_t k = 0; k < nended; k++) {
        HoldEntry *e = &ended[k];
        long long d = now - e->since;
        let_go(e);
        if (result == NULL || d < hold_ns) {
            continue;
        }
        if (!(d > self->admit || now - self->window >= WINDOW_NS)) {
            self->hsup++; /* the budget's window is full of slower holds */
            continue;
        }
        if (sem_hold_end(self, e->since, now) < 0) {
            result = NULL;
        }
    }
    if (ended != local) {
        PyMem_Free(ended);
    }
    if (result == NULL) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
sem_release(SemObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *n = one;
    if (nargs || kwnames) {
        Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
        if (nargs + nkw > 1 ||
            (nkw == 1 && PyUnicode_Compare(PyTuple_GET_ITEM(kwnames, 0), str_n) != 0)) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            return sem_bad_args(self, str_check_release, args, nargs, kwnames);
        }
        n = args[0];
    }
    return sem_release_n(self, n);
}

static PyObject *
sem_exit(SemObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    return sem_release_n(self, one);
}

/* _holders(): [(thread ident, since, (code, offset) or None, Thread)] of
 * every outstanding acquisition, oldest first. The entries are copied under
 * the mutex; the Python objects are made once it is free. */
static PyObject *
sem_holders(SemObject *self, PyObject *Py_UNUSED(ignored))
{
    if (mutex_lock(self->mutex) < 0) {
        return NULL;
    }
    Py_ssize_t n = self->nholds;
    HoldEntry *copy = n ? PyMem_Malloc((size_t)n * sizeof(HoldEntry)) : NULL;
    if (n && copy == NULL) {
        mutex_unlock(self->mutex);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        copy[i] = self->holds[i];
        Py_XINCREF(copy[i].code);
        Py_XINCREF(copy[i].thread);
    }
    mutex_unlock(self->mutex);
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; i < n; i++) {
        HoldEntry *e = &copy[i];
        if (list != NULL) {
            PyObject *item;
            if (e->code != NULL) {
                item = Py_BuildValue("(kL(Oi)O)", e->ident, e->since, e->code, e->offset,
                                     e->thread ? e->thread : Py_None);
            }
            else {
                item = Py_BuildValue("(kLOO)", e->ident, e->since, Py_None,
                                     e->thread ? e->thread : Py_None);
            }
            if (item == NULL) {
                Py_CLEAR(list);
            }
            else {
                PyList_SET_ITEM(list, i, item);
            }
        }
        let_go(e);
    }
    PyMem_Free(copy);
    return list;
}

/* _used(): took a unit or failed a try on the hot path (the waits count in _st). */
static PyObject *
sem_used(SemObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->acq != 0 || self->wblock != 0);
}

static PyObject *
sem_hhist(SemObject *self, void *Py_UNUSED(closure))
{
    return counts_list(self->hhist);
}

static PyObject *
sem_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    long long value;
    int bounded = 0;
    static char *kwlist[] = {"value", "bounded", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|p:SemaphoreCore", kwlist, &value,
                                     &bounded)) {
        return NULL;
    }
    if (value < 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
        return NULL;
    }
    SemObject *self = (SemObject *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->mutex = (MutexObject *)mutex_new(&Mutex_Type, NULL, NULL);
    if (self->mutex == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    self->value = self->initial = value;
    self->bounded = (char)bounded;
    self->track = 1;
    Py_INCREF(Py_None);
    self->blame = Py_None;
    Py_INCREF(Py_None);
    self->st = Py_None;
    Py_INCREF(Py_None);
    self->cond = Py_None;
    return (PyObject *)self;
}

static int
sem_traverse(SemObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->cond);
    Py_VISIT(self->st);
    Py_VISIT(self->meta);
    Py_VISIT(self->blame);
    for (Py_ssize_t i = 0; i < self->nholds; i++) {
        Py_VISIT(self->holds[i].code);
        Py_VISIT(self->holds[i].thread);
    }
    return 0;
}

static int
sem_clear(SemObject *self)
{
    Py_CLEAR(self->cond);
    Py_CLEAR(self->st);
    Py_CLEAR(self->meta);
    Py_CLEAR(self->blame);
    /* The entries are gone before their references are. */
    Py_ssize_t n = self->nholds;
    HoldEntry *holds = self->holds;
    self->nholds = self->cap = 0;
    self->holds = NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        let_go(&holds[i]);
    }
    PyMem_Free(holds);
    return 0;
}

static void
sem_dealloc(SemObject *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    sem_clear(self);
    Py_CLEAR(self->mutex);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef sem_members[] = {
    {"_mutex", T_OBJECT, offsetof(SemObject, mutex), READONLY, NULL},
    {"_value", T_LONGLONG, offsetof(SemObject, value), READONLY, NULL},
    {"_initial_value", T_LONGLONG, offsetof(SemObject, initial), READONLY, NULL},
    {"_nwait", T_PYSSIZET, offsetof(SemObject, nwait), 0, NULL},
    {"_track", T_BOOL, offsetof(SemObject, track), 0, NULL},
    {"_acq", T_ULONGLONG, offsetof(SemObject, acq), READONLY, NULL},
    {"_wblock", T_ULONGLONG, offsetof(SemObject, wblock), READONLY, NULL},
    {"_hsum", T_ULONGLONG, offsetof(SemObject, hsum), READONLY, NULL},
    {"_hmax", T_ULONGLONG, offsetof(SemObject, hmax), READONLY, NULL},
    {"_hsup", T_ULONGLONG, offsetof(SemObject, hsup), 0, NULL},
    {"_admit", T_LONGLONG, offsetof(SemObject, admit), 0, NULL},
    {"_window", T_LONGLONG, offsetof(SemObject, window), 0, NULL},
    {"_blame", T_OBJECT, offsetof(SemObject, blame), 0, NULL},
    {"_st", T_OBJECT, offsetof(SemObject, st), 0, NULL},
    {"_meta", T_OBJECT_EX, offsetof(SemObject, meta), 0, NULL},
    {"_cond", T_OBJECT, offsetof(SemObject, cond), 0, NULL},
    {NULL},
};

static PyGetSetDef sem_getset[] = {
    {"_hhist", (getter)sem_hhist, NULL, "raw hold histogram (a copy)", NULL},
    {NULL},
};

static PyMethodDef sem_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))sem_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(blocking=True, timeout=None) -> bool"},
    {"__enter__", (PyCFunction)sem_enter, METH_NOARGS, NULL},
    {"release", (PyCFunction)(void (*)(void))sem_release, METH_FASTCALL | METH_KEYWORDS,
     "release(n=1): give back n units, waking up to n waiters"},
    {"__exit__", (PyCFunction)(void (*)(void))sem_exit, METH_FASTCALL, NULL},
    {"_take", (PyCFunction)(void (*)(void))sem_take_locked, METH_FASTCALL,
     "_take(code, offset): take a unit under the mutex; the hold's start"},
    {"_holders", (PyCFunction)sem_holders, METH_NOARGS,
     "(thread ident, since, acquisition site, Thread) of every outstanding acquisition"},
    {"_used", (PyCFunction)sem_used, METH_NOARGS, "took a unit on the hot path"},
    {NULL},
};

static PyTypeObject SemaphoreCore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tracedsync._speedups.SemaphoreCore",
    .tp_basicsize = sizeof(SemObject),
    .tp_dealloc = (destructor)sem_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The compiled hot path of tracedsync.Semaphore and BoundedSemaphore "
              "(subclass it; do not use alone).",
    .tp_traverse = (traverseproc)sem_traverse,
    .tp_clear = (inquiry)sem_clear,
    .tp_weaklistoffset = offsetof(SemObject, weakreflist),
    .tp_methods = sem_methods,
    .tp_members = sem_members,
    .tp_getset = sem_getset,
    .tp_new = sem_new,
};

static PyObject *
mod_bind_threads(PyObject *Py_UNUSED(module), PyObject *active)
{
    if (!PyDict_Check(active)) {
        PyErr_SetString(PyExc_TypeError, "bind_threads() takes threading._active (a dict)");
        return NULL;
    }
    Py_INCREF(active);
    Py_XSETREF(active_threads, active);
    Py_RETURN_NONE;
}


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
mod_set_wait_threshold(PyObject *Py_UNUSED(module), PyObject *arg)
{
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (in_main_interpreter()) {
        wait_ns = v > 0 ? v : 0;
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

/* adopt_methods(cls): cls, a Python subclass of LockCore or RLockCore, gets
 * descriptors of its own for the C methods it inherits unchanged; returns
 * how many. CPython's specialised calls of a C method (3.11+:
 * PRECALL/CALL_NO_KW_METHOD_DESCRIPTOR_*) require type(self) to BE the
 * descriptor's type; an inherited one makes every call of lock.release() or
 * lock.locked() on the subclass take the generic, slower path. Methods
 * overridden on the way stay as they are. */
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
    else if (PyType_IsSubtype(sub, &SemaphoreCore_Type)) {
        base = &SemaphoreCore_Type;
    }
    else {
        PyErr_SetString(PyExc_TypeError,
                        "adopt_methods() takes a subclass of LockCore, RLockCore or SemaphoreCore");
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

/* stack_key(frame, depth, prefix): the interning key of tracedsync.stacks
 * (id(code), f_lasti, ...) for the first `depth` frames from `frame` outwards
 * whose file does not start with `prefix` (tracedsync's own files). The walk
 * the Python loop in stacks.capture does, without its per-frame bytecode: a
 * record crossing a threshold pays it on the program's thread. */
static PyObject *str_co_filename = NULL;
static PyObject *str_f_lasti = NULL;
#define STACK_KEY_MAX 256

static PyObject *
mod_stack_key(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyFrame_Check(args[0]) || !PyLong_Check(args[1]) ||
        !PyUnicode_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "stack_key(frame, depth: int, prefix: str)");
        return NULL;
    }
    Py_ssize_t depth = PyLong_AsSsize_t(args[1]);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    depth = depth < 1 ? 1 : (depth > STACK_KEY_MAX ? STACK_KEY_MAX : depth);
    PyObject *prefix = args[2];
    PyObject *items[2 * STACK_KEY_MAX];
    Py_ssize_t n = 0;
    PyFrameObject *frame = (PyFrameObject *)args[0];
    Py_INCREF(frame);
    while (frame != NULL && depth > 0) {
        PyCodeObject *code = PyFrame_GetCode(frame);
        PyObject *filename = PyObject_GetAttr((PyObject *)code, str_co_filename);
        if (filename == NULL) {
            Py_DECREF(code);
            goto error;
        }
        Py_ssize_t ours =
            PyUnicode_Check(filename) ? PyUnicode_Tailmatch(filename, prefix, 0, PY_SSIZE_T_MAX, -1) : 0;
        Py_DECREF(filename);
        if (ours < 0) {
            Py_DECREF(code);
            goto error;
        }
        if (!ours) {
#if PY_VERSION_HEX >= 0x030B0000
            PyObject *lasti = PyLong_FromLong(PyFrame_GetLasti(frame));
#else
            PyObject *lasti = PyObject_GetAttr((PyObject *)frame, str_f_lasti);
#endif
            PyObject *id = PyLong_FromVoidPtr(code);
            if (lasti == NULL || id == NULL) {
                Py_XDECREF(lasti);
                Py_XDECREF(id);
                Py_DECREF(code);
                goto error;
            }
            items[n++] = id;
            items[n++] = lasti;
            depth--;
        }
        Py_DECREF(code);
        PyFrameObject *back = PyFrame_GetBack(frame);
        Py_DECREF(frame);
        frame = back;
    }
    Py_XDECREF(frame);
    PyObject *key = PyTuple_New(n);
    if (key == NULL) {
        while (n > 0) {
            Py_DECREF(items[--n]);
        }
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(key, i, items[i]);
    }
    return key;
error:
    Py_XDECREF(frame);
    while (n > 0) {
        Py_DECREF(items[--n]);
    }
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"stack_key", (PyCFunction)(void (*)(void))mod_stack_key, METH_FASTCALL,
     "stack_key(frame, depth, prefix): tracedsync.stacks' interning key of a stack"},
    {"adopt_methods", mod_adopt_methods, METH_O,
     "adopt_methods(cls): cls's own descriptors for the C methods it inherits (faster calls)"},
    {"_bind", mod_bind, METH_O, "_bind(recorder): where the slow paths live"},
    {"bind_threads", mod_bind_threads, METH_O,
     "bind_threads(active): threading._active, where a semaphore's hold finds its Thread"},
    {"set_hold_threshold", mod_set_hold_threshold, METH_O,
     "set_hold_threshold(ns): holds at least this long go to recorder.hold_end"},
    {"hold_threshold", mod_hold_threshold, METH_NOARGS, "the current hold threshold (ns)"},
    {"set_wait_threshold", mod_set_wait_threshold, METH_O,
     "set_wait_threshold(ns): blocking acquires wait this long in C first (0: never)"},
    {"monotonic_ns", mod_monotonic_ns, METH_NOARGS, "the clock the hot path reads (ns)"},
    {"in_main_interpreter", mod_in_main_interpreter, METH_NOARGS,
     "True in the main interpreter (the only one that may use the compiled types)"},
    {NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tracedsync._speedups",
    .m_doc = "The compiled hot path of tracedsync's Lock, RLock, Semaphore and BoundedSemaphore.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_acquire_slow = PyUnicode_InternFromString("acquire_slow");
    str_hold_end = PyUnicode_InternFromString("hold_end");
    str_reacquire = PyUnicode_InternFromString("reacquire");
    str_blocking = PyUnicode_InternFromString("blocking");
    str_timeout = PyUnicode_InternFromString("timeout");
    str_acquire = PyUnicode_InternFromString("acquire");
    minus_one = PyLong_FromLong(-1);
    str_co_filename = PyUnicode_InternFromString("co_filename");
    str_f_lasti = PyUnicode_InternFromString("f_lasti");
    if (!str_co_filename || !str_f_lasti) {
        return NULL;
    }
    if (!str_acquire_slow || !str_hold_end || !str_reacquire || !str_blocking || !str_timeout ||
        !str_acquire || !minus_one) {
        return NULL;
    }
    str_block = PyUnicode_InternFromString("_block");
    str_notify = PyUnicode_InternFromString("notify");
    str_check_acquire = PyUnicode_InternFromString("_signature_acquire");
    str_check_release = PyUnicode_InternFromString("_signature_release");
    str_n = PyUnicode_InternFromString("n");
    zero = PyLong_FromLong(0);
    one = PyLong_FromLong(1);
    if (!str_block || !str_notify || !str_check_acquire ||
        !str_check_release || !str_n || !zero || !one) {
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
    if (PyType_Ready(&LockCore_Type) < 0 || PyType_Ready(&RLockCore_Type) < 0 ||
        PyType_Ready(&Mutex_Type) < 0 || PyType_Ready(&SemaphoreCore_Type) < 0) {
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
    Py_INCREF(&SemaphoreCore_Type);
    if (PyModule_AddObject(m, "SemaphoreCore", (PyObject *)&SemaphoreCore_Type) < 0) {
        Py_DECREF(&SemaphoreCore_Type);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(&Mutex_Type);
    if (PyModule_AddObject(m, "Mutex", (PyObject *)&Mutex_Type) < 0) {
        Py_DECREF(&Mutex_Type);
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObject(m, "SEMAPHORE_VALUE_MAX", PyLong_FromLongLong(SEMAPHORE_VALUE_MAX)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "RAW_BUCKETS", RAW_BUCKETS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
