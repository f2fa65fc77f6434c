/* The kernels' worker pool (included by pool.pyx only: one pool per process).

   npl_pool_run(fn, ctx, chunks, threads) runs fn(ctx, i, chunks) for every
   i < chunks on the caller and up to threads-1 workers, which spin for at
   most npl_spin_ns before they block on a condition variable. One job at a
   time (npl_pool_acquire / npl_pool_release). BLAS's set_num_threads is
   called under a lock that fork() takes first, and a forked child starts the
   pool over. Without POSIX threads (Windows) a job runs on the caller. */
#ifndef NPGAN_POOL_H
#define NPGAN_POOL_H
#include <stdint.h>
#if defined(_WIN32)
#define NPL_HAVE_POOL 0
static long long npl_spin_ns = 0;
static int npl_pinned_prev = 0, npl_restore_blas = 0;
static void npl_init(void) {}
static void npl_blas_set(void (*set)(int), int n) { set(n); }
static int npl_pool_acquire(void) { return 0; }
static void npl_pool_release(void) {}
static int npl_pool_run(void (*fn)(void *, int, int), void *ctx, int chunks, int threads) {
    for (int i = 0; i < chunks; i++) fn(ctx, i, chunks);
    return 1;
}
#else
#define NPL_HAVE_POOL 1
#include <pthread.h>
#include <stdatomic.h>

/* A job is fn(ctx, i, chunks) for i < chunks. Chunk indices are claimed
   from npl_next, which holds (job number << 24) | next index, by
   compare-and-swap, so a worker still holding an old job can never claim
   (or spend) an index of the next one. The caller waits until npl_done
   counts every chunk of its job, so none is still running afterwards. */
static pthread_mutex_t npl_caller = PTHREAD_MUTEX_INITIALIZER;   /* one job at a time */
static pthread_mutex_t npl_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t npl_work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t npl_finished = PTHREAD_COND_INITIALIZER;
static _Atomic long long npl_job = 0;  /* job number: changed under npl_mu, read also outside */
static void (*npl_fn)(void *, int, int);
static void *npl_ctx;
static int npl_chunks, npl_helpers;    /* chunks of the job, workers that join it */
static int npl_workers = 0;            /* threads started */
static _Atomic long long npl_next;
static _Atomic int npl_done;
static int npl_atfork = 0;
static long long npl_spin_ns = 1000000; /* how long a waiting thread spins before it blocks */
static int npl_pinned_prev = 0;        /* BLAS's thread count while a job has it at 1, else 0 */
static int npl_restore_blas = 0;       /* in a forked child: give BLAS this count back */

#include <time.h>
static inline long long npl_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}
static inline void npl_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
/* Spin while ``cond`` holds, for at most npl_spin_ns; the caller then
   checks (and waits) under the mutex as before. */
#define NPL_SPIN_WHILE(cond) do {                                         \
    if (npl_spin_ns > 0) {                                                \
        long long end_ = npl_now_ns() + npl_spin_ns;                      \
        for (int i_ = 0; (cond); i_++) {                                  \
            npl_relax();                                                  \
            if ((i_ & 63) == 63 && npl_now_ns() > end_) break;            \
        }                                                                 \
    }                                                                     \
} while (0)

static int npl_claim(long long job, int chunks) {
    long long cur = atomic_load(&npl_next);
    for (;;) {
        if ((cur >> 24) != job || (int)(cur & 0xffffff) >= chunks) return -1;
        if (atomic_compare_exchange_weak(&npl_next, &cur, cur + 1)) return (int)(cur & 0xffffff);
    }
}

static void npl_work_on(long long job, void (*fn)(void *, int, int), void *ctx, int chunks) {
    int i;
    while ((i = npl_claim(job, chunks)) >= 0) {
        fn(ctx, i, chunks);
        if (atomic_fetch_add(&npl_done, 1) + 1 == chunks) {
            pthread_mutex_lock(&npl_mu);
            pthread_cond_broadcast(&npl_finished);
            pthread_mutex_unlock(&npl_mu);
        }
    }
}

static void *npl_worker(void *arg) {
    int id = (int)(intptr_t)arg;
    pthread_mutex_lock(&npl_mu);
    long long seen = npl_job;
    for (;;) {
        if (npl_job == seen) {                      /* spin a little, then block */
            pthread_mutex_unlock(&npl_mu);
            NPL_SPIN_WHILE(atomic_load(&npl_job) == seen);
            pthread_mutex_lock(&npl_mu);
        }
        while (npl_job == seen) pthread_cond_wait(&npl_work, &npl_mu);
        seen = npl_job;
        if (id >= npl_helpers) continue;            /* fewer threads wanted now */
        void (*fn)(void *, int, int) = npl_fn;
        void *ctx = npl_ctx;
        int chunks = npl_chunks;
        pthread_mutex_unlock(&npl_mu);
        npl_work_on(seen, fn, ctx, chunks);
        pthread_mutex_lock(&npl_mu);
    }
    return NULL;
}

/* fork(): the child has only the thread that forked. No worker survives,
   and a lock or condition held by another thread would stay so for ever:
   all start over. A job another thread was running had BLAS at 1 thread;
   its count is restored at the child's next use of the pool (not here:
   only async-signal-safe work belongs in a fork handler). */
static void npl_child_after_fork(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    npl_caller = m; npl_mu = m; npl_work = c; npl_finished = c;
    npl_workers = 0;
    npl_restore_blas = npl_pinned_prev;
    npl_pinned_prev = 0;
}

/* BLAS's set_num_threads under a lock that fork() takes first (prepare
   handler): OpenBLAS's own lock, taken inside it, would otherwise be
   inherited held by a child forked meanwhile, and the child's next
   threaded BLAS call would wait for it for ever. */
static pthread_mutex_t npl_blas_mu = PTHREAD_MUTEX_INITIALIZER;
static void npl_blas_set(void (*set)(int), int n) {
    pthread_mutex_lock(&npl_blas_mu);
    set(n);
    pthread_mutex_unlock(&npl_blas_mu);
}
static void npl_before_fork(void) { pthread_mutex_lock(&npl_blas_mu); }
static void npl_parent_after_fork(void) { pthread_mutex_unlock(&npl_blas_mu); }
static void npl_child_after_fork_all(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    npl_blas_mu = m;
    npl_child_after_fork();
}

/* at import, so that no fork can come between a first job and the handlers */
static void npl_init(void) {
    if (!npl_atfork) {
        pthread_atfork(npl_before_fork, npl_parent_after_fork, npl_child_after_fork_all);
        npl_atfork = 1;
    }
}

/* 1 if this thread may run a job now (else another one is: compute alone) */
static int npl_pool_acquire(void) { return pthread_mutex_trylock(&npl_caller) == 0; }
static void npl_pool_release(void) { pthread_mutex_unlock(&npl_caller); }

/* Run a job on the caller and up to threads-1 workers (pool acquired). */
static int npl_pool_run(void (*fn)(void *, int, int), void *ctx, int chunks, int threads) {
    pthread_mutex_lock(&npl_mu);
    while (npl_workers < threads - 1) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&t, &attr, npl_worker, (void *)(intptr_t)npl_workers);
        pthread_attr_destroy(&attr);
        if (err) break;                             /* go on with fewer */
        npl_workers++;
    }
    npl_fn = fn; npl_ctx = ctx; npl_chunks = chunks;
    npl_helpers = threads - 1 < npl_workers ? threads - 1 : npl_workers;
    atomic_store(&npl_done, 0);
    long long job = ++npl_job;
    atomic_store(&npl_next, job << 24);
    pthread_cond_broadcast(&npl_work);
    pthread_mutex_unlock(&npl_mu);
    npl_work_on(job, fn, ctx, chunks);
    NPL_SPIN_WHILE(atomic_load(&npl_done) < chunks);
    pthread_mutex_lock(&npl_mu);
    while (atomic_load(&npl_done) < chunks) pthread_cond_wait(&npl_finished, &npl_mu);
    pthread_mutex_unlock(&npl_mu);
    return npl_helpers + 1;
}
#endif
#endif
