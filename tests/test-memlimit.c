/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-memlimit.c: the memory budget and LRU reclaim (issue 4).
 *
 *  - resident memory never exceeds the limit, by the library's figures and
 *    by the kernel's (RssShmem, and the blocks allocated to memfds), while
 *    reading ten times the limit in sequential and in random order;
 *  - VMPAGE_MEMLIMIT parsing, malformed values refused;
 *  - page sizes that do not divide the limit, limits below one page;
 *  - LRU: a hot set survives a cold stream ten times the limit, at a 4 MiB
 *    and at a 64 MiB limit (read-ahead windows of 2 MiB);
 *  - vmp_ram_reclaim() and the figures;
 *  - dirty pages are never dropped: a budget full of them fails the fault
 *    with -ENOMEM (seen through vmp_guard) until writeout or discard;
 *  - the kernel's mapping limit (vm.max_map_count) is a budget too:
 *    200 000 random page reads keep working, and dirtying more isolated
 *    pages than the kernel can map fails with -ENOMEM, never a crash.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

/* RssShmem is read from per-cpu counters that may lag by a batch. */
#define RSS_SLACK (256 * KiB)

/* Setup and teardown: no test sees, or leaves, a $VMPAGE_MEMLIMIT. */
static int clear_memlimit_env(void **state)
{
	(void)state;
	unsetenv("VMPAGE_MEMLIMIT");
	return 0;
}

struct lim {
	struct mock *m;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	size_t ps;
	uint64_t npages;
	uint64_t limit;    /* as given */
	uint64_t eff;      /* max(limit, one page): what resident may reach */
	uint64_t rss0;     /* RssShmem before */
	uint64_t memfd0;   /* memfd blocks before */
};

static void lim_open(struct lim *l, size_t ps, uint64_t limit, uint64_t npages)
{
	memset(l, 0, sizeof(*l));
	l->ps = ps;
	l->limit = limit;
	l->eff = limit > ps ? limit : ps;
	l->npages = npages;
	l->rss0 = rss_shmem();
	l->memfd0 = memfd_allocated_bytes();
	l->m = mock_new_generated(ps);
	assert_ok(vmp_ram_new(&l->ram, limit));
	l->fh = open_fh(l->ram, l->m, 0);
	l->p = map_pages(l->fh, 0, npages, PROT_READ);
	assert_u64(ram_stats(l->ram).limit_bytes, limit);
}

static void lim_close(struct lim *l)
{
	assert_ok(vmp_munmap(l->p));
	assert_ok(vmp_fileh_close(l->fh));
	assert_ok(vmp_ram_free(l->ram));
	mock_free(l->m);
}

static uint64_t above(uint64_t now, uint64_t base)
{
	return now > base ? now - base : 0;
}

/* The budget holds by every measure, at step @i. */
static void check_budget(struct lim *l, uint64_t i)
{
	struct vmp_stats st = ram_stats(l->ram);
	uint64_t memfd = above(memfd_allocated_bytes(), l->memfd0);
	uint64_t rss = above(rss_shmem(), l->rss0);

	if (st.resident_bytes > l->eff)
		fail_msg("step %llu: resident_bytes %llu > limit %llu",
			 (unsigned long long)i,
			 (unsigned long long)st.resident_bytes,
			 (unsigned long long)l->eff);
	if (memfd > l->eff)
		fail_msg("step %llu: memfds hold %llu bytes > limit %llu",
			 (unsigned long long)i, (unsigned long long)memfd,
			 (unsigned long long)l->eff);
	if (rss > l->eff + RSS_SLACK)
		fail_msg("step %llu: RssShmem grew by %llu > limit %llu "
			 "(a page mapped twice counts twice)",
			 (unsigned long long)i, (unsigned long long)rss,
			 (unsigned long long)l->eff);
}

/* Read page @b at a byte that moves with @b, and check it. */
static void read_page(struct lim *l, uint64_t b)
{
	size_t off = (b * 97) % l->ps;

	if ((uint8_t)l->p[b * l->ps + off] != gen_byte(b, off, 0))
		fail_msg("page %llu byte %zu wrong", (unsigned long long)b,
			 off);
}

static void print_stats(const char *what, vmp_ram *ram)
{
	struct vmp_stats st = ram_stats(ram);

	print_message("%s: resident %llu peak %llu loads %llu faults %llu "
		      "reclaimed %llu readahead %llu\n",
		      what, (unsigned long long)st.resident_bytes,
		      (unsigned long long)st.peak_resident_bytes,
		      (unsigned long long)st.loads,
		      (unsigned long long)st.faults,
		      (unsigned long long)st.reclaimed_pages,
		      (unsigned long long)st.readahead_pages);
}

/* --- the limit holds -------------------------------------------------------- */

static void test_limit_sequential_10x(void **state)
{
	struct lim l;
	struct vmp_stats st;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	lim_open(&l, os_page(), 4 * MiB, 10 * 4 * MiB / os_page());
	for (uint64_t b = 0; b < l.npages; b++) {
		read_page(&l, b);
		if (b % 64 == 63)
			check_budget(&l, b);
	}
	check_budget(&l, l.npages);
	st = ram_stats(l.ram);
	print_stats("sequential", l.ram);
	assert_u64_le(st.peak_resident_bytes, l.eff);
	assert_true(st.loads >= l.npages);
	assert_true(st.reclaimed_pages >= l.npages - l.eff / l.ps);
	assert_u64(st.loads, l.m->load_ok);
	lim_close(&l);
}

static void test_limit_random_10x(void **state)
{
	struct lim l;
	struct rng r;
	uint64_t *order;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	rng_seed(&r, test_seed(4));
	lim_open(&l, os_page(), 4 * MiB, 10 * 4 * MiB / os_page());
	/* Every page once in a random order, then as many random reads. */
	order = malloc(l.npages * sizeof(*order));
	assert_non_null(order);
	for (uint64_t i = 0; i < l.npages; i++)
		order[i] = i;
	for (uint64_t i = l.npages - 1; i > 0; i--) {
		uint64_t j = rng_below(&r, i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (uint64_t i = 0; i < 2 * l.npages; i++) {
		read_page(&l, i < l.npages ? order[i]
					   : rng_below(&r, l.npages));
		if (i % 64 == 63)
			check_budget(&l, i);
	}
	print_stats("random", l.ram);
	assert_u64_le(ram_stats(l.ram).peak_resident_bytes, l.eff);
	free(order);
	lim_close(&l);
}

/* Limits that are not a multiple of the page size, and below one page. */
static void check_odd_limit(size_t ps, uint64_t limit, uint64_t npages)
{
	struct lim l;

	print_message("page %zu, limit %llu\n", ps, (unsigned long long)limit);
	lim_open(&l, ps, limit, npages);
	for (uint64_t b = 0; b < npages; b++) {
		read_page(&l, b);
		check_budget(&l, b);
	}
	/* And back, so that reclaimed pages are loaded again. */
	for (uint64_t b = npages; b-- > 0;)
		read_page(&l, b);
	check_budget(&l, 2 * npages);
	assert_u64_le(ram_stats(l.ram).peak_resident_bytes, l.eff);
	lim_close(&l);
}

static void test_limit_not_multiple(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_odd_limit(64 * KiB, 1 * MiB + 20 * KiB, 180);
	check_odd_limit(2 * MiB, 5 * MiB, 26);
	check_odd_limit(os_page(), 1000, 40);       /* below one page */
	check_odd_limit(64 * KiB, 100 * KiB, 20);   /* 1.56 pages */
}

/* Two handles share one budget; reclaim takes from both. */
static void test_shared_budget(void **state)
{
	const size_t ps = os_page();
	const uint64_t limit = 2 * MiB, npages = 10 * limit / ps;
	struct mock *a = mock_new_generated(ps), *b = mock_new_generated(ps);
	vmp_ram *ram;
	vmp_fileh *fa, *fb;
	char *pa, *pb;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, limit));
	fa = open_fh(ram, a, 0);
	fb = open_fh(ram, b, 0);
	pa = map_pages(fa, 0, npages, PROT_READ);
	pb = map_pages(fb, 0, npages, PROT_READ);
	for (uint64_t i = 0; i < npages; i++) {
		assert_int_equal((uint8_t)pa[i * ps + 1], gen_byte(i, 1, 0));
		assert_int_equal((uint8_t)pb[i * ps + 2], gen_byte(i, 2, 0));
		if (i % 32 == 0)
			assert_u64_le(ram_stats(ram).resident_bytes, limit);
	}
	/* The first pages of both were dropped: reading them loads again. */
	(void)peek(pa);
	(void)peek(pb);
	assert_u64(mock_loads(a, 0), 2);
	assert_u64(mock_loads(b, 0), 2);
	assert_u64_le(ram_stats(ram).peak_resident_bytes, limit);
	assert_ok(vmp_munmap(pa));
	assert_ok(vmp_munmap(pb));
	assert_ok(vmp_fileh_close(fa));
	assert_ok(vmp_fileh_close(fb));
	assert_ok(vmp_ram_free(ram));
	mock_free(a);
	mock_free(b);
}

/* --- VMPAGE_MEMLIMIT -------------------------------------------------------- */

static vmp_ram *ram_from_env(const char *value, int want)
{
	vmp_ram *ram = (vmp_ram *)(uintptr_t)0x5a5a5a5a;
	int rc;

	if (value)
		setenv("VMPAGE_MEMLIMIT", value, 1);
	else
		unsetenv("VMPAGE_MEMLIMIT");
	rc = vmp_ram_new(&ram, 0);
	if (rc != want)
		fail_msg("VMPAGE_MEMLIMIT=\"%s\": vmp_ram_new returned %s, "
			 "expected %s", value ? value : "(unset)", errname(rc),
			 errname(want));
	if (rc)
		assert_ptr_equal(ram, (vmp_ram *)(uintptr_t)0x5a5a5a5a);
	return rc ? NULL : ram;
}

static void expect_limit(const char *value, uint64_t want)
{
	vmp_ram *ram = ram_from_env(value, 0);

	if (ram_stats(ram).limit_bytes != want)
		fail_msg("VMPAGE_MEMLIMIT=\"%s\": limit %llu, expected %llu",
			 value ? value : "(unset)",
			 (unsigned long long)ram_stats(ram).limit_bytes,
			 (unsigned long long)want);
	assert_ok(vmp_ram_free(ram));
}

static int new_from_env(void *arg)
{
	vmp_ram **ramp = arg;

	return vmp_ram_new(ramp, 0);
}

static void expect_malformed(const char *value)
{
	vmp_ram *ram = (vmp_ram *)(uintptr_t)0x5a5a5a5a;
	char err[1024];
	int rc;

	setenv("VMPAGE_MEMLIMIT", value, 1);
	rc = capture_stderr(new_from_env, &ram, err, sizeof(err));
	if (rc != -EINVAL)
		fail_msg("VMPAGE_MEMLIMIT=\"%s\": vmp_ram_new returned %s, "
			 "expected -EINVAL", value, errname(rc));
	assert_ptr_equal(ram, (vmp_ram *)(uintptr_t)0x5a5a5a5a);
	if (!strstr(err, value) || strncmp(err, "vmpage: ", 8))
		fail_msg("VMPAGE_MEMLIMIT=\"%s\": message does not name the "
			 "value: \"%s\"", value, err);
}

static void test_memlimit_env(void **state)
{
	const char *bad[] = { "abc", "12x", "-5", "m", "1.5g", "64mm", "k64",
			      "5 g", "99999999999999999999",
			      "18446744073709551615k", "20000000000g" };
	vmp_ram *ram;

	(void)state;
	expect_limit("64m", 64 * MiB);
	expect_limit("2g", 2 * GiB);
	expect_limit("512k", 512 * KiB);
	expect_limit("12345", 12345);
	expect_limit("", 0);
	expect_limit(NULL, 0);
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		expect_malformed(bad[i]);

	/* An explicit limit does not read the variable. */
	setenv("VMPAGE_MEMLIMIT", "garbage", 1);
	assert_ok(vmp_ram_new(&ram, 3 * MiB));
	assert_u64(ram_stats(ram).limit_bytes, 3 * MiB);
	assert_ok(vmp_ram_free(ram));
	unsetenv("VMPAGE_MEMLIMIT");
}

/* --- LRU ------------------------------------------------------------------ */

/*
 * A hot set of a quarter of the limit, touched again after every @every
 * pages of a cold stream ten times the limit, survives: at most
 * @max_reloaded of its pages are loaded a second time (and none a third).
 * Read-ahead windows of the cold stream grow to 2 MiB (an eighth of a
 * 16 MiB limit and up), so at the larger scales reclaim drops a window's
 * worth at a time.
 */
static void hot_set_survives(uint64_t limit, uint64_t every,
			     uint64_t max_reloaded)
{
	const size_t ps = os_page();
	const uint64_t lpages = limit / ps;
	const uint64_t nhot = lpages / 4, ncold = 10 * lpages;
	const uint64_t cold0 = 1 << 20; /* cold blocks start here */
	struct mock *m = mock_new_generated(ps);
	uint64_t reloaded = 0, worst = 0, first_loss = UINT64_MAX;
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *hot, *cold;

	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, limit));
	fh = open_fh(ram, m, 0);
	hot = map_pages(fh, 0, nhot, PROT_READ);
	cold = map_pages(fh, cold0, ncold, PROT_READ);

	for (uint64_t c = 0; c < ncold; c++) {
		if (c % every == 0) {
			for (uint64_t h = 0; h < nhot; h++)
				(void)peek(hot + h * ps + (c / every) % ps);
			/* For the report: when the hot set was first lost. */
			if (first_loss == UINT64_MAX && mock_loads(m, 0) > 1)
				first_loss = c;
		}
		if ((uint8_t)cold[c * ps] != gen_byte(cold0 + c, 0, 0))
			fail_msg("cold page %llu wrong", (unsigned long long)c);
	}
	st = ram_stats(ram);
	print_stats("hot/cold", ram);
	for (uint64_t h = 0; h < nhot; h++) {
		uint64_t n = mock_loads(m, h);

		if (n > 1)
			reloaded++;
		if (n > worst)
			worst = n;
	}
	if (reloaded > max_reloaded || worst > 2)
		fail_msg("%llu of %llu hot pages were loaded again (one up "
			 "to %llu times) while streaming; hot page 0 first "
			 "reloaded after %lld of %llu cold pages",
			 (unsigned long long)reloaded, (unsigned long long)nhot,
			 (unsigned long long)worst,
			 first_loss == UINT64_MAX ? -1LL : (long long)first_loss,
			 (unsigned long long)ncold);
	assert_u64(st.loads, m->load_ok);
	assert_true(st.loads >= nhot + ncold);
	assert_true(st.reclaimed_pages >= ncold - (lpages - nhot));
	assert_u64_le(st.peak_resident_bytes, limit);

	assert_ok(vmp_munmap(hot));
	assert_ok(vmp_munmap(cold));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static void test_hot_set_survives_streaming(void **state)
{
	(void)state;
	/* a hot page touched every 32 cold pages: never lost */
	hot_set_survives(4 * MiB, 32, 0);
}

static void test_hot_set_survives_at_scale(void **state)
{
	(void)state;
	/* every 2 MiB, a whole read-ahead window: when the RAM first fills,
	 * a sixteenth of the hot set went once (measured); allow an eighth */
	hot_set_survives(64 * MiB, 512, (64 * MiB / os_page() / 4) / 8);
}

/* --- vmp_ram_reclaim ------------------------------------------------------ */

static void test_reclaim_and_stats(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 256, 0);
	uint64_t memfd0 = memfd_allocated_bytes();
	struct vmp_stats st0, st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 256, PROT_READ | PROT_WRITE);
	for (uint64_t b = 0; b < 100; b++)
		(void)peek(p + b * ps);
	st0 = ram_stats(ram);
	assert_u64(st0.limit_bytes, 0);
	assert_true(st0.resident_bytes >= 100 * ps);
	assert_u64(st0.resident_bytes, st0.loads * ps);
	assert_true(st0.faults >= 1);
	assert_u64_le(above(memfd_allocated_bytes(), memfd0),
		      st0.resident_bytes);

	/* Nothing asked, nothing dropped. */
	assert_ok(vmp_ram_reclaim(ram, 0));
	assert_u64(ram_stats(ram).resident_bytes, st0.resident_bytes);

	assert_ok(vmp_ram_reclaim(ram, 40 * ps));
	st = ram_stats(ram);
	assert_u64_le(st.resident_bytes, st0.resident_bytes - 40 * ps);
	assert_true(st.reclaimed_pages >= st0.reclaimed_pages + 40);
	/* The memory went back to the kernel. */
	assert_u64_le(above(memfd_allocated_bytes(), memfd0),
		      st.resident_bytes);
	/* Dropped pages load again, with the right bytes. */
	for (uint64_t b = 0; b < 100; b++)
		assert_int_equal(gen_check(p + b * ps, ps, b, 0), 0);
	assert_true(ram_stats(ram).loads >= st0.loads + 40);

	/* Dirty pages stay, whatever is asked. */
	for (uint64_t b = 200; b < 205; b++)
		p[b * ps] = 'd';
	assert_ok(vmp_ram_reclaim(ram, SIZE_MAX));
	st = ram_stats(ram);
	assert_u64(st.resident_bytes, 5 * ps);
	assert_u64(st.dirty_bytes, 5 * ps);
	assert_u64(dirty_count(fh), 5);
	for (uint64_t b = 200; b < 205; b++) {
		assert_int_equal(p[b * ps], 'd');
		assert_int_equal((uint8_t)p[b * ps + 100], gen_byte(b, 100, 0));
	}
	assert_u64_le(above(memfd_allocated_bytes(), memfd0), 5 * ps);
	/* Nothing clean left: not an error. */
	assert_ok(vmp_ram_reclaim(ram, ps));
	assert_u64(ram_stats(ram).resident_bytes, 5 * ps);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* vmp_prefault of a range larger than the limit: clean pages may be
 * dropped again, but the call succeeds; dirty pages cannot exceed it. */
static void test_prefault_beyond_limit(void **state)
{
	const size_t ps = os_page();
	struct mock *m = mock_new(ps, 64, 0);
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	int rc;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 4 * ps));
	fh = open_fh(ram, m, 0);
	p = map_pages(fh, 0, 64, PROT_READ | PROT_WRITE);
	assert_ok(vmp_prefault(p, 16 * ps, 0));
	assert_u64_le(ram_stats(ram).resident_bytes, 4 * ps);
	assert_int_equal(gen_check(p + 15 * ps, ps, 15, 0), 0);

	rc = vmp_prefault(p + 32 * ps, 16 * ps, 1);
	assert_rc(rc, -ENOMEM);
	assert_u64_le(ram_stats(ram).resident_bytes, 4 * ps);
	print_message("prefault for writing failed after dirtying %llu pages\n",
		      (unsigned long long)dirty_count(fh));
	assert_ok(vmp_discard(fh));
	assert_ok(vmp_prefault(p + 32 * ps, 4 * ps, 1));
	assert_u64(dirty_count(fh), 4);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- dirty pages fill the budget ----------------------------------------------- */

/* Pages [first, first + n) dirty with a mark; checks they still are. */
static void dirty_run(char *p, size_t ps, uint64_t first, uint64_t n)
{
	for (uint64_t b = first; b < first + n; b++)
		p[b * ps + 3] = (char)(b + 1);
}

static void assert_run_kept(char *p, size_t ps, uint64_t first, uint64_t n)
{
	for (uint64_t b = first; b < first + n; b++) {
		if (p[b * ps + 3] != (char)(b + 1))
			fail_msg("dirty page %llu lost its write",
				 (unsigned long long)b);
		if ((uint8_t)p[b * ps + 100] != gen_byte(b, 100, 0))
			fail_msg("dirty page %llu lost its bytes",
				 (unsigned long long)b);
	}
}

static void test_dirty_budget_enomem(void **state)
{
	const size_t ps = os_page();
	const uint64_t lpages = 16;
	struct mock *m = mock_new(ps, 256, 0);
	struct fault_seen s = { .answer = VMP_FAULT_DEFAULT };
	struct vmp_stats st;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;
	uint8_t v;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, lpages * ps));
	fh = open_fh(ram, m, 0);
	assert_ok(vmp_set_fault_error_handler(fh, record_fault_handler, &s));
	p = map_pages(fh, 0, 256, PROT_READ | PROT_WRITE);

	dirty_run(p, ps, 0, lpages);
	assert_u64(dirty_count(fh), lpages);
	st = ram_stats(ram);
	assert_u64(st.dirty_bytes, lpages * ps);

	/* No room: the read fails, the write fails, nothing is dropped. */
	assert_rc(guarded_peek(p + 20 * ps, &v), -ENOMEM);
	assert_int_equal(s.calls, 1);
	assert_int_equal(s.last.what, VMP_FAULT_MEMLIMIT);
	assert_u64(s.last.blk, 20);
	assert_rc(s.last.err, -ENOMEM);
	assert_rc(guarded_poke(p + 21 * ps, 'x'), -ENOMEM);
	assert_ok(vmp_ram_reclaim(ram, SIZE_MAX));
	assert_u64(dirty_count(fh), lpages);
	assert_u64(ram_stats(ram).resident_bytes, st.resident_bytes);
	assert_u64(ram_stats(ram).dirty_bytes, st.dirty_bytes);
	assert_run_kept(p, ps, 0, lpages);

	/* After a writeout the same access succeeds. */
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
				   VMP_WRITEOUT_MARKSTORED));
	assert_ok(guarded_peek(p + 20 * ps, &v));
	assert_int_equal(v, gen_byte(20, 0, 0));
	assert_u64_le(ram_stats(ram).resident_bytes, lpages * ps);

	/* And after a discard. */
	dirty_run(p, ps, 100, lpages);
	assert_rc(guarded_peek(p + 30 * ps, &v), -ENOMEM);
	assert_ok(vmp_discard(fh));
	assert_ok(guarded_peek(p + 30 * ps, &v));
	assert_int_equal(v, gen_byte(30, 0, 0));
	assert_u64_le(ram_stats(ram).peak_resident_bytes, lpages * ps);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

/* --- the kernel's mapping limit ------------------------------------------------ */

struct sweep {
	char *p;
	size_t ps;
	uint64_t npages;
	uint64_t count;  /* accesses to make */
	uint64_t done;   /* accesses made */
	uint64_t stride; /* write sweep: every stride-th page */
	struct rng r;
};

static int random_reads(void *arg)
{
	struct sweep *s = arg;

	for (; s->done < s->count; s->done++) {
		uint64_t b = rng_below(&s->r, s->npages);
		size_t off = (size_t)rng_below(&s->r, s->ps);

		if ((uint8_t)s->p[b * s->ps + off] != gen_byte(b, off, 0))
			return -EBADMSG;
	}
	return 0;
}

static void test_200k_random_reads(void **state)
{
	const size_t ps = 4 * KiB;
	struct mock *m = mock_new_generated(ps);
	struct sweep s = { 0 };
	vmp_ram *ram;
	vmp_fileh *fh;
	int rc;

	(void)state;
	if (os_page() != ps)
		skip();
	assert_ok(vmp_fault_handler_install());
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	s.npages = BIG_SPAN / ps;
	s.p = map_pages(fh, 0, s.npages, PROT_READ);
	s.ps = ps;
	s.count = 200000;
	rng_seed(&s.r, test_seed(200000));

	rc = vmp_guard(random_reads, &s);
	if (rc)
		fail_msg("random read %llu of %llu failed: %s",
			 (unsigned long long)s.done,
			 (unsigned long long)s.count, errname(rc));
	print_stats("200k random reads", ram);
	assert_true(count_kernel_maps() < max_map_count());
	/* random picks repeat: rarely in 1 TiB, 16x as often in TSan's span */
	assert_true(ram_stats(ram).loads >= 200000 - 1000 * (TiB / BIG_SPAN));

	assert_ok(vmp_munmap(s.p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

static int isolated_writes(void *arg)
{
	struct sweep *s = arg;

	for (; s->done < s->count; s->done++)
		s->p[s->done * s->stride * s->ps] = 'w';
	return 0;
}

static void test_dirty_isolated_pages_enomem(void **state)
{
	const size_t ps = 4 * KiB;
	struct mock *m;
	struct sweep s = { 0 };
	struct fault_seen seen = { .answer = VMP_FAULT_DEFAULT };
	vmp_ram *ram;
	vmp_fileh *fh;
	uint64_t written;
	int rc;

	(void)state;
	if (os_page() != ps || max_map_count() > 200000) {
		print_message("needs 4 KiB pages and vm.max_map_count <= "
			      "200000\n");
		skip();
	}
	assert_ok(vmp_fault_handler_install());
	s.ps = ps;
	s.stride = 2;
	s.count = (uint64_t)max_map_count() + 1000; /* more than can map */
	s.npages = (s.count + 1) * s.stride;
	m = mock_new(ps, s.npages, 0);
	assert_ok(vmp_ram_new(&ram, 0));
	fh = open_fh(ram, m, 0);
	assert_ok(vmp_set_fault_error_handler(fh, record_fault_handler, &seen));
	s.p = map_pages(fh, 0, s.npages, PROT_READ | PROT_WRITE);

	rc = vmp_guard(isolated_writes, &s);
	written = s.done;
	print_message("%llu isolated dirty pages, then %s\n",
		      (unsigned long long)written, errname(rc));
	assert_true(count_kernel_maps() <= max_map_count());
	if (rc != 0) {
		assert_rc(rc, -ENOMEM);
		assert_int_equal(seen.calls, 1);
		assert_int_equal(seen.last.what, VMP_FAULT_MAPLIMIT);
		assert_u64(seen.last.blk, written * s.stride);
		assert_rc(seen.last.err, -ENOMEM);
	} else {
		/* Not an error: the library found a way to map them all. */
		print_message("all isolated dirty pages were mapped\n");
	}

	/* No page lost; they are all still there and dirty. */
	assert_u64(dirty_count(fh), written);
	for (uint64_t i = 0; i < written; i++)
		if (s.p[i * s.stride * ps] != 'w')
			fail_msg("dirty page %llu lost", (unsigned long long)i);

	/* After a discard, the page that failed can be written. */
	assert_ok(vmp_discard(fh));
	assert_ok(guarded_poke(s.p + written * s.stride * ps, 'w'));
	assert_u64(dirty_count(fh), 1);

	assert_ok(vmp_munmap(s.p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	mock_free(m);
}

FD_CHECKED(test_limit_sequential_10x)
FD_CHECKED(test_limit_random_10x)
FD_CHECKED(test_limit_not_multiple)
FD_CHECKED(test_shared_budget)
FD_CHECKED(test_memlimit_env)
FD_CHECKED(test_hot_set_survives_streaming)
FD_CHECKED(test_hot_set_survives_at_scale)
FD_CHECKED(test_reclaim_and_stats)
FD_CHECKED(test_prefault_beyond_limit)
FD_CHECKED(test_dirty_budget_enomem)
FD_CHECKED(test_200k_random_reads)
FD_CHECKED(test_dirty_isolated_pages_enomem)

#define T(f) FD_TEST_SETUP(f, clear_memlimit_env, clear_memlimit_env)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_limit_sequential_10x),
		T(test_limit_random_10x),
		T(test_limit_not_multiple),
		T(test_shared_budget),
		T(test_memlimit_env),
		T(test_hot_set_survives_streaming),
		T(test_hot_set_survives_at_scale),
		T(test_reclaim_and_stats),
		T(test_prefault_beyond_limit),
		T(test_dirty_budget_enomem),
		T(test_200k_random_reads),
		T(test_dirty_isolated_pages_enomem),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
