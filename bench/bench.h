/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * bench.h: what the benchmark's files share.
 *
 *   main.c       options, setup, and the repetitions of each job
 *   rows.c       the list of jobs and metrics (the table's lines), with
 *                their references and targets
 *   report.c     medians, ratios, targets, and the output (table, CSV, JSON)
 *   data.c       the test data and its checksums, the test file and its page
 *                cache state, timing, the access loops (sequential sum,
 *                random touch, in one or several threads)
 *   floors.c     the bare mechanisms: fault floor (a), copy floor (b), and
 *                kernel mmap of the file (and of a memfd, for the wall)
 *   librows.c    everything that goes through libvmpage, with either fault
 *                mechanism, and the wall rows
 *   scans.c      issue 14: parallel scans (OpenMP), random gather, 2 MiB
 *                blocks and binary search over larger mappings
 *
 * A *job* is one piece of work that is repeated (one repetition = one fresh
 * mapping); it yields one value per *metric* (a line of the table).  Most jobs
 * have one metric; a change-set job has four (first write, writeout, re-dirty,
 * discard), measured on the same pages.
 *
 * The data: word g (the 8 bytes at byte offset 8 g) of the test file and of
 * every generated store is data_word(g).  The value depends on the position,
 * so a block loaded at the wrong place or not at all changes the sums, and
 * every sum has a closed form (data_sum), checked after each repetition.
 */
#ifndef VMP_BENCH_H
#define VMP_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KiB (1024ull)
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define OS_PAGE 4096ull
#define WORDS_PER_OS_PAGE (OS_PAGE / 8)
#define MAX_REPS 100
#define MAX_METRICS_PER_JOB 4

/* --- options ------------------------------------------------------------- */

enum out_format { OUT_TABLE, OUT_CSV, OUT_JSON };

struct opts {
	uint64_t size;      /* test file bytes, a multiple of 2 MiB */
	int reps;           /* repetitions per job, at most */
	int min_reps;       /* ... and at least, even over the job budget */
	double job_budget;  /* s: no new repetition once a job ran this long */
	double cap;         /* s: an access loop stops early after this */
	size_t ntouch;      /* random touches per repetition */
	enum out_format out;
	const char *only;   /* comma-separated substrings of metric names */
	bool quick;
	bool verbose;       /* per-job time on stderr */
};
extern struct opts opt;

/* --- data, checksums ----------------------------------------------------- */

#define DATA_K 0x9E3779B97F4A7C15ull

static inline uint64_t data_word(uint64_t g)
{
	return g * DATA_K;
}

/* The word that a random touch of 4 KiB page @p reads: somewhere inside the
 * page, not always the first word, so that a half-filled page is caught. */
static inline uint64_t touch_word(uint64_t p)
{
	return p * WORDS_PER_OS_PAGE + ((p * 0x9E37u) & (WORDS_PER_OS_PAGE - 1));
}

/* Fill @nbytes (multiple of 8) at @buf with the data from word @first.
 * Async-signal-safe (the fault floor's handler calls it). */
void data_fill(void *buf, uint64_t first, size_t nbytes);
/* Sum of data_word(g) over g in [first, first + n), mod 2^64. */
uint64_t data_sum(uint64_t first, uint64_t n);
/* Plain sum of @n words; the sequential workload. */
uint64_t sum_words(const uint64_t *w, size_t n);

/* A random permutation of the test file's 4 KiB pages (fixed seed); random
 * workloads touch perm[0 .. ntouch). */
extern uint32_t *g_perm;
extern uint64_t g_npages;   /* test file size / 4 KiB */
extern size_t g_ntouch;     /* min(opt.ntouch, g_npages) */
void shuffle(uint32_t *a, size_t n, uint64_t seed);

/* --- the test file and the page cache ------------------------------------ */

extern int g_fd;            /* the test file, unlinked, read-write */
extern uint64_t g_size;     /* its size */
extern char g_fsname[16];   /* file system type of its directory */

/* $TMPDIR, else /var/tmp (a disk, where /tmp may be tmpfs: cold rows need
 * a file that can leave the page cache). */
const char *tmp_dir(void);
/* Create an unlinked temporary file of @size bytes of data in $TMPDIR (or
 * /var/tmp).  Returns the fd or -errno; @what names it in messages. */
int file_create(uint64_t size, const char *what);
/* Put the test file (only it: the functions keep its state) in the page
 * cache in the one "hot" state all hot rows share: dropped, read whole. */
void cache_hot(int fd, uint64_t size);
/* Drop it from the page cache (cache_drop); returns what stayed, in %. */
double cache_cold(int fd, uint64_t size);
/* Drop a file from the page cache: fdatasync first (fadvise does not drop
 * dirty pages, e.g. right after writing the file), then
 * POSIX_FADV_DONTNEED.  Returns the percentage of its pages still resident
 * afterwards. */
double cache_drop(int fd, uint64_t size);
/* Percentage of the file's pages in the page cache (mincore). */
double cache_resident_pct(int fd, uint64_t size);

/* --- timing, memory ------------------------------------------------------ */

double now(void);
/* Per row: reset the peak (/proc/self/clear_refs 5, if allowed), run,
 * read VmHWM.  The process-wide peak, from getrusage, is tracked across
 * the resets. */
void peak_rss_reset(void);
double peak_rss_mib(void);
double process_peak_rss_mib(void);
/* Spin for about @iters steps of a dependent computation (not a clock:
 * a preempted thread must not count as working).  spin_calibrate() returns
 * the steps per microsecond on this CPU. */
uint64_t spin_work(uint64_t iters);
double spin_calibrate(void);

/* --- access loops -------------------------------------------------------- */

/* ACC_CPU: no memory at all, ntouch times the ~20 us computation of the
 * spinning store: what the machine's CPUs give in parallel. */
enum access_kind { ACC_SEQ, ACC_RAND, ACC_CPU };

/* One access loop over a mapping that shows the data from word 0. */
struct access {
	const uint64_t *base;
	uint64_t nbytes;          /* SEQ: bytes to sum, from base */
	enum access_kind kind;
	const uint32_t *perm;     /* RAND: the 4 KiB pages to touch, in order */
	size_t ntouch;
	double cap;               /* s, 0 = none: stop early after this */
	uint64_t spin;            /* CPU: spin_work steps per "block" */
	/* results */
	uint64_t sum;
	uint64_t done;            /* SEQ: bytes summed, RAND: pages touched */
	double secs;
	bool capped;
};

/* Run the loop; int (*)(void *) so that vmp_guard() can run it. */
int access_run(void *access);
/* Compare a->sum with the closed form; on a mismatch describe it in @err. */
bool access_check(const struct access *a, char *err, size_t errlen);
/* GB/s (SEQ) or million pages per second (RAND). */
double access_rate(const struct access *a);
/* Run @a[0 .. n) in n threads started together (n == 0: a[0] in this
 * thread).  With @guard each runs under vmp_guard(); the first negative
 * return lands in *@err.  Returns the wall time, first start to last end. */
double access_parallel(struct access *a, int n, bool guard, int *err);
/* Fill @a[0 .. n) (n >= 1) with RAND loops over slices of
 * perm[0 .. ntouch). */
void access_split(struct access *a, int n, const uint64_t *base,
		  const uint32_t *perm, size_t ntouch);

/* --- jobs and their repetitions ------------------------------------------ */

enum rep_status { REP_OK, REP_BADSUM, REP_ERROR, REP_NA };

/* What one repetition of a job reports. */
struct rep {
	double val[MAX_METRICS_PER_JOB]; /* one per metric of the job */
	bool capped;                     /* an access loop hit opt.cap */
	double meta_bpp;                 /* library metadata B per resident
					    page; < 0: not a library row */
	enum rep_status status;
	char msg[200];                   /* why, when not REP_OK */
	char info[120];                  /* REP_OK: a remark for the note
					    (the first repetition's) */
};

enum temp { T_NONE, T_HOT, T_COLD };

struct metric;
struct job;
typedef void job_fn(const struct job *j, struct rep *r);

struct job {
	job_fn *run;
	size_t ps;              /* page (block) size */
	enum temp temp;         /* page cache state of the test file */
	enum access_kind acc;
	bool limit;             /* RAM limit = a quarter of the file */
	int threads;            /* 0: in the main thread */
	bool spin;              /* loadblk computes ~20 us per block */
	bool overlay;           /* VMP_OVERLAY */
	unsigned evict;         /* change sets: VMP_SPILL or VMP_WRITEBACK,
				   under a limit of a quarter of the set */
	bool reclaimer;         /* ... with the background reclaimer on */
	int faults;             /* library rows: VMP_FAULTS_SIGSEGV or _UFFD
				   (0: SIGSEGV) */
	bool dynamic;           /* par/: 2 MiB chunks handed out dynamically */
	bool sep_fds;           /* par/floor-sep: a memfd per thread */
	int reps;               /* at most this many repetitions, 0: opt.reps */
	int min_reps;           /* at least this many (at most reps), 0:
				   opt.min_reps */
	int nm;
	struct metric *m[MAX_METRICS_PER_JOB];
	bool run_it;
};

void rep_fail(struct rep *r, enum rep_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* librows.c: the generated store, and a RAM + handle + mapping */
struct gen {
	size_t blksize;
	uint64_t spin;                 /* spin_work steps per load, 0: none */
	bool sorted;                   /* word g is g (bsearch), else
					  data_word(g) */
	_Atomic uint64_t stored_sum;   /* sum of every word storeblk got */
	_Atomic uint64_t stored_blocks;
};
/* A store over @g, or NULL with the error in @r. */
struct vmp_store;
struct vmp_store *gen_store_new(struct gen *g, struct rep *r);

struct libmap {
	struct vmp_ram *ram;
	struct vmp_fileh *fh;
	void *addr;
	size_t ps;
};
/* Open a RAM (0 = no limit) with fault mechanism @faults (0: SIGSEGV),
 * a handle on @st (of blocks of @ps bytes) and a mapping of pages
 * [0, npages).  @st is given up here: the handle keeps it until it closes.
 * On failure the error is in @r and nothing is left open.  A userfaultfd
 * this kernel or process cannot use makes the row "n/a", not a failure. */
bool lib_open(struct libmap *m, struct vmp_store *st, size_t ps,
	      uint64_t limit, unsigned flags, int faults, uint64_t npages,
	      int prot, struct rep *r);
/* Metadata bytes per resident page now, or -1 when nothing is resident. */
double lib_meta_bpp(const struct libmap *m);
void lib_close(struct libmap *m, struct rep *r);

/* floors.c */
job_fn job_floor_fault;   /* ps 4 KiB; threads 0 (ns/fault) or N (kfaults/s) */
job_fn job_floor_copy;    /* ps */
job_fn job_kernel;        /* temp, acc */
job_fn job_cpu;           /* threads: the spin alone, no faults */
job_fn job_kernel_wall;   /* kernel/second-pass: see WALL_* below */

/* librows.c */
extern double g_spin_iters;  /* spin_work steps for ~20 us */
job_fn job_file;          /* ps, temp, acc, limit, overlay */
job_fn job_gen_fault;     /* random first touch, 4 KiB */
job_fn job_gen_seq;       /* ps */
job_fn job_changeset;     /* ps, overlay: 4 metrics */
job_fn job_threads;       /* threads, spin */
job_fn job_meta;          /* 2 metrics: untouched mapping, per page */
job_fn job_wall_second_pass; /* faults: ns per touch of the 2nd pass */
job_fn job_wall_dirty_max;   /* faults; isolated dirty pages held */

/* scans.c (issue 14): g_big_size = 4 x the test file (1 GiB by default) */
extern uint64_t g_big_size;
job_fn job_par_cpu;       /* threads */
job_fn job_par_kernel;    /* threads, dynamic: kernel mmap of the big file */
job_fn job_par_floor;     /* threads, sep_fds: the copy floor in parallel */
job_fn job_par_lib;       /* threads, dynamic, ps, limit; temp T_HOT: the
			     file store on the big file, else generated */
job_fn job_gather;        /* loads per distinct page, random words */
job_fn job_big_copy;      /* ps: copy floor of the big generated store */
job_fn job_big_seq;       /* ps: its sequential first-touch read */
job_fn job_bsearch_mem;   /* us per lookup, array in memory */
job_fn job_bsearch_lib;   /* us per lookup, 64 MiB limit */

/* The wall rows (kernel mapping limit of the SIGSEGV mechanism): a store of
 * WALL_PAGES 4 KiB pages (4 GiB), g_wall_touches distinct random pages of
 * it touched once, then again in another random order (timed); and up to
 * g_wall_dirty pages dirtied, every other page of a mapping twice as
 * large.  200 000 and 1 000 000; --quick: 60 000 each (still well past
 * the ~57 000 and ~28 600 pages of the SIGSEGV wall). */
#define WALL_PAGES (4 * GiB / OS_PAGE)
extern size_t g_wall_touches;
extern uint64_t g_wall_dirty;
/* The g_wall_touches distinct random pages in [0, WALL_PAGES) (fixed seed)
 * in the order of the first pass (@pass 0) or of the second (1, the same
 * pages shuffled again); made on first use; NULL if out of memory. */
const uint32_t *wall_perm(int pass);
/* Whether userfaultfd can serve faults here: 0, or why not (-errno).
 * Found out once, in setup. */
extern int g_uffd_err;

/* --- the table: rows.c builds it, main.c runs it, report.c prints it ---- */

/* One line of the table. */
struct metric {
	char name[40];
	const char *unit;
	bool higher;            /* higher is better (a rate) */
	char ref_name[40];      /* ratio = median / ref's median */
	char kref_name[40];     /* second ratio, to kernel mmap */
	char tgt_op;            /* 0: no target; '<' at most, '>' at least */
	double tgt;
	bool tgt_abs;           /* the target is on the value, not the ratio */
	struct job *job;        /* the job that measures it */
	struct metric *ref, *kref; /* resolved names, NULL: none */
	/* results */
	double v[MAX_REPS];     /* one per successful repetition */
	int n;
	double med, lo, hi;     /* median, min, max of v */
	double rv[MAX_REPS];    /* v[i] / the paired run of ref */
	int rn;
	double ratio;           /* median of rv */
	double rss_mib;         /* peak RSS of its job's repetitions */
	double meta_bpp;        /* library metadata B per resident page */
	bool capped;            /* a repetition stopped at opt.cap */
	bool ran;
	char note[240];
	enum rep_status status; /* of the first repetition that failed */
};

extern struct metric metrics[];
extern int nmetrics;
extern struct job jobs[];
extern int njobs;

/* rows.c */
void rows_build(void);
/* Mark the jobs to run: those with a metric selected by opt.only, and the
 * jobs of every reference that their metrics' ratios need. */
void rows_select(void);

/* report.c */
/* Median, min, max of the repetitions. */
void metric_finish(struct metric *m);
void report_header(void);
/* Print one line as soon as its job is done (its references ran before). */
void report_metric(const struct metric *m);
void report_footer(double secs, bool failed);

#endif /* VMP_BENCH_H */
