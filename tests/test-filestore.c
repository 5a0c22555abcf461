/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * test-filestore.c: the built-in file store, vmp_file_store_new().
 *
 * Block b is bytes [b * blksize, (b + 1) * blksize) of the file; reads past
 * the end give zeros and do not grow the file; a writeout pwrites the dirty
 * blocks, past the end of the file only up to their last non-zero byte;
 * the store keeps a duplicate of the fd, so the caller's may be closed at
 * once; a store reopened after its handles closed is still the same file;
 * bad arguments change nothing.  The same holds through a VMP_OVERLAY
 * handle, which maps the file itself.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

struct fs {
	int fd;            /* the caller's fd, for checks with pread */
	vmp_store *store;  /* NULL once the test freed it */
	vmp_ram *ram;
	vmp_fileh *fh;
	size_t ps;
};

/* A file of @size bytes of generated blocks and a handle on it.  Returns
 * false if @flags is VMP_OVERLAY and the library does not offer it. */
static bool fs_open(struct fs *f, uint64_t size, size_t ps, unsigned flags)
{
	int rc;

	f->ps = ps;
	f->fd = temp_file(size, ps);
	assert_ok(vmp_file_store_new(&f->store, f->fd, ps));
	assert_ok(vmp_ram_new(&f->ram, 0));
	rc = vmp_fileh_open(&f->fh, f->ram, f->store, flags);
	if ((flags & VMP_OVERLAY) && (rc == -EINVAL || rc == -EOPNOTSUPP)) {
		assert_ok(vmp_store_free(f->store));
		assert_ok(vmp_ram_free(f->ram));
		close(f->fd);
		return false;
	}
	assert_ok(rc);
	return true;
}

/* fs_open() and a buffer of @ps bytes; skips the test if fs_open() fails. */
static char *fs_open_buf(struct fs *f, uint64_t size, size_t ps,
			 unsigned flags)
{
	char *buf = malloc(ps);

	assert_non_null(buf);
	if (!fs_open(f, size, ps, flags)) {
		free(buf);
		skip();
	}
	return buf;
}

static void fs_close(struct fs *f)
{
	assert_ok(vmp_fileh_close(f->fh));
	if (f->store)
		assert_ok(vmp_store_free(f->store));
	assert_ok(vmp_ram_free(f->ram));
	/* The fd is the caller's: still open after the store is gone. */
	assert_true(fcntl(f->fd, F_GETFD) >= 0);
	close(f->fd);
}

static uint64_t file_size(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_size;
}

static bool all_byte(const char *p, size_t n, char c)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != c)
			return false;
	return true;
}

static bool all_zero(const char *p, size_t n)
{
	return all_byte(p, n, 0);
}

/* Run @child in a child process, where a kernel SIGBUS is a clear failure
 * instead of the end of this test program; skipped if the library does
 * not offer VMP_OVERLAY. */
static void overlay_in_child(void (*child)(void *arg))
{
	struct child_result r;
	struct fs f;

	if (!fs_open(&f, os_page(), os_page(), VMP_OVERLAY))
		skip();
	fs_close(&f);
	run_child(child, NULL, &r);
	assert_child_exited_ok(&r);
}

/* --- reading -------------------------------------------------------------- */

static void check_bytes(size_t ps, unsigned flags)
{
	struct fs f;
	char *p, *buf = fs_open_buf(&f, 10 * ps, ps, flags);

	p = map_pages(f.fh, 0, 10, PROT_READ);
	for (uint64_t b = 0; b < 10; b++) {
		assert_int_equal(gen_check(p + b * ps, ps, b, 0), 0);
		assert_int_equal(pread(f.fd, buf, ps, (off_t)(b * ps)),
				 (ssize_t)ps);
		assert_memory_equal(buf, p + b * ps, ps);
	}
	/* A mapping that starts inside the file. */
	assert_ok(vmp_munmap(p));
	p = map_pages(f.fh, 7, 2, PROT_READ);
	assert_int_equal(gen_check(p + ps, ps, 8, 0), 0);
	assert_ok(vmp_munmap(p));
	if (flags & VMP_OVERLAY)
		assert_u64(ram_stats(f.ram).resident_bytes, 0);
	fs_close(&f);
	free(buf);
}

static void test_bytes(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_bytes(os_page(), 0);
	check_bytes(64 * KiB, 0);
	check_bytes(2 * MiB, 0);
}

static void test_bytes_overlay(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_bytes(os_page(), VMP_OVERLAY);
	check_bytes(64 * KiB, VMP_OVERLAY);
}

static void check_past_eof(size_t ps, unsigned flags)
{
	const uint64_t size = 2 * ps + ps / 2; /* 2.5 blocks */
	struct fs f;
	char *p;

	if (!fs_open(&f, size, ps, flags))
		skip();
	p = map_pages(f.fh, 0, 6, PROT_READ);
	assert_int_equal(gen_check(p + ps, ps, 1, 0), 0);
	assert_int_equal(gen_check(p + 2 * ps, ps / 2, 2, 0), 0);
	assert_true(all_zero(p + 2 * ps + ps / 2, ps / 2));
	for (uint64_t b = 3; b < 6; b++)
		assert_true(all_zero(p + b * ps, ps));
	/* Reading does not grow the file. */
	assert_u64(file_size(f.fd), size);
	assert_ok(vmp_munmap(p));
	fs_close(&f);
}

static void test_past_eof_zeros(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_past_eof(os_page(), 0);
	check_past_eof(64 * KiB, 0);
	check_past_eof(2 * MiB, 0);
}

/* A kernel mapping of a file past its end raises SIGBUS: an overlay handle
 * must not let that through.  In a child, so that a SIGBUS is a clear
 * failure, not the end of this test program. */
static void child_overlay_past_eof(void *arg)
{
	(void)arg;
	child_check_rc(vmp_fault_handler_install(), 0);
	check_past_eof(os_page(), VMP_OVERLAY);
}

static void test_past_eof_zeros_overlay(void **state)
{
	(void)state;
	overlay_in_child(child_overlay_past_eof);
}

/* --- writing -------------------------------------------------------------- */

static void check_writeout(unsigned flags)
{
	const size_t ps = os_page();
	struct fs f;
	char *p, *buf = fs_open_buf(&f, 10 * ps, ps, flags);

	p = map_pages(f.fh, 0, 10, PROT_READ | PROT_WRITE);
	memset(p + ps, 'A', ps);
	p[7 * ps + 9] = 'B';
	assert_u64(dirty_count(f.fh), 2);
	/* Not in the file before the writeout. */
	assert_int_equal(pread(f.fd, buf, ps, (off_t)ps), (ssize_t)ps);
	assert_int_equal(gen_check(buf, ps, 1, 0), 0);

	assert_ok(vmp_writeout(f.fh, VMP_WRITEOUT_STORE |
				     VMP_WRITEOUT_MARKSTORED));
	assert_u64(dirty_count(f.fh), 0);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)ps), (ssize_t)ps);
	assert_true(all_byte(buf, ps, 'A'));
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(7 * ps)), (ssize_t)ps);
	assert_int_equal(buf[9], 'B');
	buf[9] = (char)gen_byte(7, 9, 0);
	assert_int_equal(gen_check(buf, ps, 7, 0), 0);
	for (uint64_t b = 0; b < 10; b++) {
		if (b == 1 || b == 7)
			continue;
		assert_int_equal(pread(f.fd, buf, ps, (off_t)(b * ps)),
				 (ssize_t)ps);
		assert_int_equal(gen_check(buf, ps, b, 0), 0);
	}
	assert_u64(file_size(f.fd), 10 * ps);

	/* Discarded changes never reach the file. */
	p[2 * ps] = 'C';
	assert_ok(vmp_discard(f.fh));
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(2 * ps)), (ssize_t)ps);
	assert_int_equal(gen_check(buf, ps, 2, 0), 0);
	assert_int_equal(gen_check(p + 2 * ps, ps, 2, 0), 0);

	assert_ok(vmp_munmap(p));
	fs_close(&f);
	free(buf);
}

/* A write past the end grows the file to its last non-zero byte; the hole
 * reads as zeros. */
static void check_write_past_eof(unsigned flags)
{
	const size_t ps = os_page();
	struct fs f;
	char *p, *buf = fs_open_buf(&f, 10 * ps, ps, flags);

	p = map_pages(f.fh, 9, 5, PROT_READ | PROT_WRITE);
	p[0] = 'x';                    /* block 9, the last one */
	assert_true(all_zero(p + 3 * ps, 2 * ps)); /* blocks 12, 13 */
	p[4 * ps + 1] = 'E';
	assert_ok(vmp_writeout(f.fh, VMP_WRITEOUT_STORE |
				     VMP_WRITEOUT_MARKSTORED));
	assert_u64(file_size(f.fd), 13 * ps + 2);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(13 * ps)), 2);
	assert_int_equal(buf[0], 0);
	assert_int_equal(buf[1], 'E');
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(9 * ps)), (ssize_t)ps);
	assert_int_equal(buf[0], 'x');
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(11 * ps)), (ssize_t)ps);
	assert_true(all_zero(buf, ps));

	assert_ok(vmp_munmap(p));
	fs_close(&f);
	free(buf);
}

static void test_write_past_eof(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_write_past_eof(0);
}

/* In a child: a kernel SIGBUS past the end of the base file must be a
 * clear failure, not the end of this test program. */
static void child_overlay_write_past_eof(void *arg)
{
	(void)arg;
	child_check_rc(vmp_fault_handler_install(), 0);
	check_write_past_eof(VMP_OVERLAY);
}

static void test_write_past_eof_overlay(void **state)
{
	(void)state;
	overlay_in_child(child_overlay_write_past_eof);
}

/*
 * A writeout never grows the file because of zeros: a block reaching past
 * the end is written up to the end of the file or to its last non-zero
 * byte, whichever is further.  A file of 3 blocks and 100 bytes, as a
 * program's file is, not a multiple of the block size.
 */
static void check_size_rule(size_t ps, unsigned flags)
{
	const uint64_t size = 3 * ps + 100;
	const int rw = PROT_READ | PROT_WRITE;
	const unsigned commit = VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED;
	struct fs f;
	char *p, *buf = fs_open_buf(&f, size, ps, flags);

	p = map_pages(f.fh, 0, 6, rw);

	/* A change inside the last, partial block: the size stays. */
	p[3 * ps + 50] = 'A';
	assert_ok(vmp_writeout(f.fh, commit));
	assert_u64(file_size(f.fd), size);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(3 * ps)), 100);
	assert_int_equal(buf[50], 'A');
	buf[50] = (char)gen_byte(3, 50, 0);
	assert_int_equal(gen_check(buf, 96, 3, 0), 0);
	for (size_t i = 96; i < 100; i++)
		assert_int_equal((uint8_t)buf[i], gen_byte(3, i, 0));

	/* Non-zero bytes past the end, in the last block: the file grows to
	 * the last of them, the gap reads as zeros. */
	p[3 * ps + 200] = 'C';
	p[3 * ps + 300] = 'B';
	assert_ok(vmp_writeout(f.fh, commit));
	assert_u64(file_size(f.fd), 3 * ps + 301);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(3 * ps)), 301);
	assert_int_equal(buf[50], 'A');
	assert_true(all_zero(buf + 100, 100));
	assert_int_equal(buf[200], 'C');
	assert_true(all_zero(buf + 201, 99));
	assert_int_equal(buf[300], 'B');

	/* Only zeros past the end, in the last block and in a block wholly
	 * past it: written out, and the size stays. */
	p[3 * ps + 1000] = 0;
	p[5 * ps + 9] = 0;
	assert_u64(dirty_count(f.fh), 2);
	assert_ok(vmp_writeout(f.fh, commit));
	assert_u64(dirty_count(f.fh), 0);
	assert_u64(file_size(f.fd), 3 * ps + 301);

	/* A non-zero byte in a block wholly past the end: the file grows to
	 * it; the hole before it reads as zeros, in the file and mapped. */
	p[5 * ps + 7] = 'D';
	assert_ok(vmp_writeout(f.fh, commit));
	assert_u64(file_size(f.fd), 5 * ps + 8);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(3 * ps)), (ssize_t)ps);
	assert_int_equal(buf[300], 'B');
	assert_true(all_zero(buf + 301, ps - 301));
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(4 * ps)), (ssize_t)ps);
	assert_true(all_zero(buf, ps));
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(5 * ps)), 8);
	assert_true(all_zero(buf, 7));
	assert_int_equal(buf[7], 'D');
	assert_true(all_zero(p + 4 * ps, ps));
	assert_int_equal(p[3 * ps + 300], 'B');

	/* Bytes in the file are the file's: zeroing its last byte keeps
	 * the size. */
	p[5 * ps + 7] = 0;
	assert_ok(vmp_writeout(f.fh, commit));
	assert_u64(file_size(f.fd), 5 * ps + 8);
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(5 * ps)), 8);
	assert_true(all_zero(buf, 8));
	/* and the blocks before the last one were never touched */
	assert_int_equal(pread(f.fd, buf, ps, (off_t)(2 * ps)), (ssize_t)ps);
	assert_int_equal(gen_check(buf, ps, 2, 0), 0);

	assert_ok(vmp_munmap(p));
	fs_close(&f);
	free(buf);
}

static void test_size_rule(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_size_rule(os_page(), 0);
	check_size_rule(64 * KiB, 0);
}

/* In a child: a kernel SIGBUS past the end of the base file must be a
 * clear failure, not the end of this test program. */
static void child_overlay_size_rule(void *arg)
{
	(void)arg;
	child_check_rc(vmp_fault_handler_install(), 0);
	check_size_rule(os_page(), VMP_OVERLAY);
}

static void test_size_rule_overlay(void **state)
{
	(void)state;
	overlay_in_child(child_overlay_size_rule);
}

static void test_writeout_goes_to_file(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_writeout(0);
}

static void test_writeout_goes_to_file_overlay(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_writeout(VMP_OVERLAY);
}

/* A store over a read-only fd loads, and its writeout fails with every
 * change kept. */
static void test_readonly_fd(void **state)
{
	const size_t ps = os_page();
	int wfd = temp_file(4 * ps, ps);
	char path[64];
	int fd, rc;
	vmp_store *s;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	snprintf(path, sizeof(path), "/proc/self/fd/%d", wfd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_ok(vmp_file_store_new(&s, fd, ps));
	assert_ok(vmp_ram_new(&ram, 0));
	assert_ok(vmp_fileh_open(&fh, ram, s, 0));
	p = map_pages(fh, 0, 4, PROT_READ | PROT_WRITE);
	assert_int_equal(gen_check(p + ps, ps, 1, 0), 0);
	p[ps] = 'w';
	rc = vmp_writeout(fh, VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED);
	if (rc != -EBADF && rc != -EROFS)
		fail_msg("writeout to a read-only fd returned %s, expected "
			 "-EBADF or -EROFS", errname(rc));
	assert_u64(dirty_count(fh), 1);
	assert_int_equal(p[ps], 'w');
	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_store_free(s));
	assert_ok(vmp_ram_free(ram));
	close(fd);
	close(wfd);
}

/* --- arguments and ownership ------------------------------------------------ */

static void test_file_store_bad_args(void **state)
{
	const size_t ps = os_page();
	int fd = temp_file(ps, ps);
	int closed = dup(fd);
	int wronly, append;
	char path[64];
	/* a failed call must leave *storep alone */
	vmp_store *const unset = (vmp_store *)(uintptr_t)0x5a5a5a5a5a5a5a5aull;
	vmp_store *s = unset;
	const size_t bad_sizes[] = { 0, 1, ps / 2, ps + 1, 3 * ps,
				     (size_t)2 * GiB, SIZE_MAX };

	(void)state;
	close(closed);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	wronly = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(wronly >= 0);
	append = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
	assert_true(append >= 0);

	assert_rc(vmp_file_store_new(NULL, fd, ps), -EINVAL);
	assert_rc(vmp_file_store_new(&s, -1, ps), -EINVAL);
	assert_rc(vmp_file_store_new(&s, -100, ps), -EINVAL);
	for (size_t i = 0; i < ARRAY_LEN(bad_sizes); i++) {
		int rc = vmp_file_store_new(&s, fd, bad_sizes[i]);

		if (rc != -EINVAL)
			fail_msg("vmp_file_store_new(blksize %zu) returned %s",
				 bad_sizes[i], errname(rc));
	}
	/* pwrite on an O_APPEND fd appends: blocks would land at the end. */
	assert_rc(vmp_file_store_new(&s, append, ps), -EINVAL);
	assert_rc(vmp_file_store_new(&s, closed, ps), -EBADF);
	assert_rc(vmp_file_store_new(&s, wronly, ps), -EBADF);
	assert_ptr_equal(s, unset);
	/* (FD_CHECKED: no duplicate of an fd was left open.) */

	close(append);
	close(wronly);
	close(fd);
}

/* Never opened: vmp_store_free releases the store at once, closing its
 * duplicate of the fd (FD_CHECKED, and ASan sees no leak); the caller's
 * fd stays open. */
static void test_release_without_handle(void **state)
{
	const size_t ps = os_page();
	int fd = temp_file(ps, ps);
	int fds = count_open_fds();
	vmp_store *s = NULL;

	(void)state;
	assert_ok(vmp_file_store_new(&s, fd, ps));
	assert_non_null(s);
	assert_int_equal(count_open_fds(), fds + 1); /* its duplicate */
	assert_ok(vmp_store_free(s));
	assert_int_equal(count_open_fds(), fds);
	assert_true(fcntl(fd, F_GETFD) >= 0);
	close(fd);
}

/* Two handles share the store, and the program frees it while both are
 * open: they go on reading and committing the file (the store and its fd
 * live until the last close; FD_CHECKED: then its fd is closed). */
static void test_two_handles(void **state)
{
	const size_t ps = os_page();
	struct fs f;
	vmp_fileh *fh2;
	char *a, *b;

	(void)state;
	assert_ok(vmp_fault_handler_install());
	assert_true(fs_open(&f, 4 * ps, ps, 0));
	assert_ok(vmp_fileh_open(&fh2, f.ram, f.store, 0));
	assert_ok(vmp_store_free(f.store));
	f.store = NULL;
	a = map_pages(f.fh, 0, 4, PROT_READ | PROT_WRITE);
	b = map_pages(fh2, 0, 4, PROT_READ);
	a[0] = 'q';
	assert_int_equal((uint8_t)b[0], gen_byte(0, 0, 0));
	assert_ok(vmp_writeout(f.fh, VMP_WRITEOUT_STORE |
				     VMP_WRITEOUT_MARKSTORED));
	assert_ok(vmp_invalidate(fh2, 0, 4));
	assert_int_equal(b[0], 'q');
	assert_int_equal(gen_check(b + 3 * ps, ps, 3, 0), 0);
	assert_ok(vmp_munmap(a));
	assert_ok(vmp_munmap(b));
	assert_ok(vmp_fileh_close(fh2));
	fs_close(&f);
}

/* --- the store's lifetime ------------------------------------------------- */

/*
 * Open, close, open again on one store: the program holds it, so the store
 * and its file outlive the handles.  Between the rounds, after the close,
 * the last round's other file store is freed and a new one made and used:
 * either may take the memory of whatever was freed too early (it did once:
 * the next handle read and wrote that other file).  Its file is empty, so
 * its zeros cannot pass for the first file's bytes.
 */
static void test_reopen_after_close(void **state)
{
	const size_t ps = os_page();
	const unsigned commit = VMP_WRITEOUT_STORE | VMP_WRITEOUT_MARKSTORED;
	int other_fd = temp_file(0, ps);
	vmp_store *other = NULL;
	struct fs f;
	char *p, *buf = fs_open_buf(&f, 4 * ps, ps, 0);

	(void)state;
	assert_ok(vmp_fault_handler_install());
	for (int round = 0; round < 3; round++) {
		vmp_fileh *ofh;
		char *q;

		if (round > 0)
			assert_ok(vmp_fileh_open(&f.fh, f.ram, f.store, 0));
		p = map_pages(f.fh, 0, 4, PROT_READ | PROT_WRITE);
		/* the file's bytes, with the earlier rounds' commits */
		for (int r = 0; r < round; r++)
			assert_int_equal(p[ps + r], 'a' + r);
		assert_int_equal(gen_check(p + 2 * ps, ps, 2, 0), 0);
		p[ps + round] = (char)('a' + round);
		assert_ok(vmp_writeout(f.fh, commit));
		assert_ok(vmp_munmap(p));
		assert_ok(vmp_fileh_close(f.fh));

		if (other)
			assert_ok(vmp_store_free(other));
		assert_ok(vmp_file_store_new(&other, other_fd, ps));
		assert_ok(vmp_fileh_open(&ofh, f.ram, other, 0));
		q = map_pages(ofh, 0, 2, PROT_READ | PROT_WRITE);
		assert_true(all_zero(q, 2 * ps));
		assert_ok(vmp_munmap(q));
		assert_ok(vmp_fileh_close(ofh));
	}
	assert_ok(vmp_store_free(other));
	/* Every commit is in the store's file, none in the other one. */
	assert_int_equal(pread(f.fd, buf, ps, (off_t)ps), (ssize_t)ps);
	assert_memory_equal(buf, "abc", 3);
	buf[0] = (char)gen_byte(1, 0, 0);
	buf[1] = (char)gen_byte(1, 1, 0);
	buf[2] = (char)gen_byte(1, 2, 0);
	assert_int_equal(gen_check(buf, ps, 1, 0), 0);
	assert_u64(file_size(f.fd), 4 * ps);
	assert_u64(file_size(other_fd), 0);

	/* fs_close closes the handle: open one for it. */
	assert_ok(vmp_fileh_open(&f.fh, f.ram, f.store, 0));
	fs_close(&f);
	close(other_fd);
	free(buf);
}

/*
 * The store reads and writes its own duplicate of the fd: the caller may
 * close its fd at once.  The number is then taken by another file, which a
 * store that kept the number would read and write instead.
 */
static void check_fd_closed_at_once(unsigned flags)
{
	const size_t ps = os_page();
	int fd = temp_file(4 * ps, ps);
	int keep = dup(fd); /* to look at the file */
	int other, rc;
	vmp_store *s;
	vmp_ram *ram;
	vmp_fileh *fh;
	char *p, *buf = malloc(ps);

	assert_non_null(buf);
	assert_true(keep >= 0);
	assert_ok(vmp_file_store_new(&s, fd, ps));
	assert_int_equal(close(fd), 0);
	other = temp_file(0, ps);
	assert_ok(vmp_ram_new(&ram, 0));
	rc = vmp_fileh_open(&fh, ram, s, flags);
	if ((flags & VMP_OVERLAY) && (rc == -EINVAL || rc == -EOPNOTSUPP)) {
		assert_ok(vmp_store_free(s));
		assert_ok(vmp_ram_free(ram));
		close(other);
		close(keep);
		free(buf);
		skip();
	}
	assert_ok(rc);
	assert_ok(vmp_store_free(s)); /* the handle holds it */

	p = map_pages(fh, 0, 4, PROT_READ | PROT_WRITE);
	for (uint64_t b = 0; b < 4; b++)
		assert_int_equal(gen_check(p + b * ps, ps, b, 0), 0);
	p[2 * ps + 1] = 'c';
	assert_ok(vmp_writeout(fh, VMP_WRITEOUT_STORE |
				   VMP_WRITEOUT_MARKSTORED));
	assert_int_equal(pread(keep, buf, ps, (off_t)(2 * ps)), (ssize_t)ps);
	assert_int_equal(buf[1], 'c');
	buf[1] = (char)gen_byte(2, 1, 0);
	assert_int_equal(gen_check(buf, ps, 2, 0), 0);
	assert_int_equal(p[2 * ps + 1], 'c');
	assert_u64(file_size(other), 0);
	assert_u64(file_size(keep), 4 * ps);

	assert_ok(vmp_munmap(p));
	assert_ok(vmp_fileh_close(fh));
	assert_ok(vmp_ram_free(ram));
	close(other);
	close(keep);
	free(buf);
}

static void test_fd_closed_at_once(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_fd_closed_at_once(0);
}

static void test_fd_closed_at_once_overlay(void **state)
{
	(void)state;
	assert_ok(vmp_fault_handler_install());
	check_fd_closed_at_once(VMP_OVERLAY);
}

FD_CHECKED(test_bytes)
FD_CHECKED(test_bytes_overlay)
FD_CHECKED(test_past_eof_zeros)
FD_CHECKED(test_past_eof_zeros_overlay)
FD_CHECKED(test_writeout_goes_to_file)
FD_CHECKED(test_writeout_goes_to_file_overlay)
FD_CHECKED(test_write_past_eof)
FD_CHECKED(test_write_past_eof_overlay)
FD_CHECKED(test_size_rule)
FD_CHECKED(test_size_rule_overlay)
FD_CHECKED(test_readonly_fd)
FD_CHECKED(test_file_store_bad_args)
FD_CHECKED(test_release_without_handle)
FD_CHECKED(test_two_handles)
FD_CHECKED(test_reopen_after_close)
FD_CHECKED(test_fd_closed_at_once)
FD_CHECKED(test_fd_closed_at_once_overlay)

int main(void)
{
	const struct CMUnitTest tests[] = {
		FD_TEST(test_bytes),
		FD_TEST(test_bytes_overlay),
		FD_TEST(test_past_eof_zeros),
		FD_TEST(test_past_eof_zeros_overlay),
		FD_TEST(test_writeout_goes_to_file),
		FD_TEST(test_writeout_goes_to_file_overlay),
		FD_TEST(test_write_past_eof),
		FD_TEST(test_write_past_eof_overlay),
		FD_TEST(test_size_rule),
		FD_TEST(test_size_rule_overlay),
		FD_TEST(test_readonly_fd),
		FD_TEST(test_file_store_bad_args),
		FD_TEST(test_release_without_handle),
		FD_TEST(test_two_handles),
		FD_TEST(test_reopen_after_close),
		FD_TEST(test_fd_closed_at_once),
		FD_TEST(test_fd_closed_at_once_overlay),
	};

	if (vmp_fault_handler_install() == -ENOSYS)
		return TEST_SKIP; /* libsigsegv cannot catch faults here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
