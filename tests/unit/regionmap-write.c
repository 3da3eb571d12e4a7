/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libregionmap: writer validation, merging, stream and memfd round trips, big maps. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "format.h"
#include "regionmap.h"
#include "unit.h"

#define G 4096u

static struct regionmap_info mkinfo(uint64_t size, uint64_t gran, uint32_t flags, const char *ctx)
{
	struct regionmap_info i = { .export_size = size, .granularity = gran, .flags = flags };

	snprintf(i.context, sizeof(i.context), "%s", ctx);
	return i;
}

/* Iterate a reader to its end; returns 0 or the error, with count and total; the first
 * DRAIN_KEEP regions are kept in drained[] for the caller to compare. */
#define DRAIN_KEEP 4
static struct { uint64_t off, len; } drained[DRAIN_KEEP];

static int drain(struct regionmap_reader *r, uint64_t *count, uint64_t *total)
{
	uint64_t off, len;
	int e;

	*count = *total = 0;
	memset(drained, 0, sizeof(drained));
	while ((e = regionmap_reader_next(r, &off, &len)) > 0) {
		if (*count < DRAIN_KEEP)
			drained[*count].off = off, drained[*count].len = len;
		++*count;
		*total += len;
	}
	return e;
}

/* A program linked with libregionmap.a may use it from its own constructors, which can run
 * before any of the library's: priority 101 runs before every default-priority one. */
static uint32_t crc_in_constructor;
__attribute__((constructor(101))) static void early_user(void)
{
	crc_in_constructor = ~rm_crc32c_update(~0u, "123456789", 9);
}

static void test_crc(void)
{
	const char *s = "123456789";

	expect_u64("crc32c from a constructor of the program's that runs first", 0xE3069283u,
		   crc_in_constructor);

	expect_u64("crc32c slicing-by-8 of 123456789", 0xE3069283u, ~rm_crc32c_sw(~0u, s, 9));
	if (rm_crc32c_have_hw())
		expect_u64("crc32c sse4.2 of 123456789", 0xE3069283u, ~rm_crc32c_hw(~0u, s, 9));
	else
		unit_skip("crc32c sse4.2 of 123456789", "the cpu lacks sse4.2 (the software one is used)");
	char big[1003];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7 + 3);
	if (!rm_crc32c_have_hw())
		unit_skip("crc32c hw and sw agree on odd lengths", "the cpu lacks sse4.2");
	else
		expect_u64("crc32c hw and sw agree on odd lengths", rm_crc32c_sw(~0u, big, sizeof(big)),
	           rm_crc32c_update(~0u, big, sizeof(big)));
}

static void test_validation(void)
{
	struct regionmap_info i = mkinfo(1 << 20, G, 0, "base:allocation");
	struct regionmap_writer *w = NULL;
	int fd = -1;

	regionmap_memfd_create("t", &fd);
	i.granularity = 3000;
	expect_int("writer rejects non-power-of-two granularity", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	i.granularity = REGIONMAP_GRANULARITY_MAX * 2;
	expect_int("writer rejects granularity above max", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	i.granularity = G;
	i.export_size = 0;
	expect_int("writer rejects zero export size", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	i.export_size = 1 << 20;
	memset(i.context, 'a', REGIONMAP_CONTEXT_MAX + 1);
	expect_int("writer rejects long context", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	snprintf(i.context, sizeof(i.context), "bad\ncontext");
	expect_int("writer rejects non-printable context", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	snprintf(i.context, sizeof(i.context), "base:allocation");
	expect_int("writer rejects fd -1", -EINVAL, regionmap_writer_new(-1, &i, 0, &w));
	expect_int("writer rejects an unknown mode", -EINVAL, regionmap_writer_new(fd, &i, 2, &w));
	i.flags = 0x2;
	expect_int("writer rejects unknown flags", -EINVAL, regionmap_writer_new(fd, &i, 0, &w));
	i.flags = 0;
	unit_check(w == NULL, "writer output untouched on failure", "w=%p", (void *)w);
	snprintf(i.context, sizeof(i.context), "qemu:dirty-bitmap:b0");

	struct { const char *d; uint64_t o, l; int want; } cases[] = {
		{ "add zero length", 0, 0, -EINVAL },
		{ "add misaligned offset", 100, G, -EINVAL },
		{ "add misaligned length", 0, 100, -EINVAL },
		{ "add past end", (1 << 20) - G, 2 * G, -ERANGE },
		{ "add offset+length overflow", UINT64_MAX - G + 1, 2 * G, -EINVAL },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		w = NULL;
		regionmap_writer_new(fd, &i, 0, &w);
		expect_int(cases[k].d, cases[k].want, regionmap_writer_add(w, cases[k].o, cases[k].l));
		expect_int("writer stays failed", cases[k].want, regionmap_writer_add(w, 0, G));
		regionmap_writer_free(w);
	}
	regionmap_writer_new(fd, &i, 0, &w);
	regionmap_writer_add(w, 8 * G, G);
	expect_int("add out of order", -EDOM, regionmap_writer_add(w, 0, G));
	regionmap_writer_free(w);
	regionmap_writer_new(fd, &i, 0, &w);
	regionmap_writer_add(w, 8 * G, 2 * G);
	expect_int("add overlapping", -EDOM, regionmap_writer_add(w, 9 * G, 2 * G));
	regionmap_writer_free(w);
	close(fd);
}

static void test_after_finish(void)
{
	struct regionmap_info i = mkinfo(1 << 20, G, 0, "base:allocation");
	struct regionmap_writer *w;
	int fd;

	regionmap_memfd_create("after", &fd);
	regionmap_writer_new(fd, &i, REGIONMAP_WRITE_STREAM, &w);
	regionmap_writer_add(w, 0, G);
	expect_int("finish", 0, regionmap_writer_finish(w));
	expect_int("add after finish", -EINVAL, regionmap_writer_add(w, 4 * G, G));
	expect_int("finish after finish", -EINVAL, regionmap_writer_finish(w));
	expect_u64("count unchanged after a refused add", 1, regionmap_writer_count(w));
	regionmap_writer_free(w);
	close(fd);
}

/* Write a memfd-mode map on fd, which cannot be sealed: finish succeeds and leaves it unsealed;
 * the stream reader reads it, the memfd reader refuses it. */
static void unsealable(const char *what, int fd)
{
	struct regionmap_info i = mkinfo(16 * G, G, 0, "base:allocation");
	struct regionmap_writer *w;
	struct regionmap_reader *r;
	uint64_t n = 0, t = 0;
	char d[160];
	int e;

	regionmap_writer_new(fd, &i, REGIONMAP_WRITE_MEMFD, &w);
	regionmap_writer_add(w, 0, G);
	regionmap_writer_add(w, 4 * G, 2 * G);
	snprintf(d, sizeof(d), "%s: finish succeeds without sealing", what);
	expect_int(d, 0, regionmap_writer_finish(w));
	regionmap_writer_free(w);
	snprintf(d, sizeof(d), "%s: no seal added", what);
	e = fcntl(fd, F_GET_SEALS);
	unit_check(e < 0 || e == F_SEAL_SEAL, d, "seals %#x", e);
	snprintf(d, sizeof(d), "%s: memfd reader refuses the unsealed map", what);
	expect_int(d, -EPERM, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	lseek(fd, 0, SEEK_SET);
	e = regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r);
	if (e == 0) {
		e = drain(r, &n, &t);
		regionmap_reader_free(r);
	}
	snprintf(d, sizeof(d), "%s: stream reader reads the map", what);
	unit_check(e == 0 && n == 2 && t == 3 * G, d, "e=%d n=%" PRIu64 " t=%" PRIu64, e, n, t);
}

static void test_unsealable(void)
{
	char path[] = "/dev/shm/regionmap-unit-XXXXXX";
	int fd = memfd_create("noseal", MFD_CLOEXEC); /* F_SEAL_SEAL from creation */

	if (fd >= 0) {
		unsealable("memfd without MFD_ALLOW_SEALING", fd);
		close(fd);
	} else {
		unit_skip("memfd without MFD_ALLOW_SEALING", "memfd_create failed");
	}
	fd = mkostemp(path, O_CLOEXEC);
	if (fd >= 0) {
		unlink(path);
		unsealable("tmpfs file", fd);
		close(fd);
	} else {
		unit_skip("tmpfs file", "no /dev/shm");
	}
	fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd >= 0 && fcntl(fd, F_GET_SEALS) < 0)
		unsealable("disk file", fd);
	else
		unit_skip("disk file", fd < 0 ? "/tmp takes no O_TMPFILE" : "/tmp is tmpfs here (sealable): no disk file");
	if (fd >= 0)
		close(fd);
}

static void test_merge_memfd(void)
{
	struct regionmap_info i = mkinfo(10 * G + 123, G, 0, "base:allocation");
	struct regionmap_writer *w;
	struct regionmap_reader *r;
	uint64_t off, len, n, t;
	int fd;

	regionmap_memfd_create("merge", &fd);
	regionmap_writer_new(fd, &i, REGIONMAP_WRITE_MEMFD, &w);
	regionmap_writer_add(w, 0, G);
	regionmap_writer_add(w, G, 2 * G);
	regionmap_writer_add(w, 5 * G, G);
	expect_int("add last extent ending unaligned at export end", 0, regionmap_writer_add(w, 6 * G, 4 * G + 123));
	expect_u64("writer merges touching extents", 2, regionmap_writer_count(w));
	expect_int("memfd finish", 0, regionmap_writer_finish(w));
	expect_u64("writer total", 8 * G + 123, regionmap_writer_total(w));
	regionmap_writer_free(w);
	unit_check((fcntl(fd, F_GET_SEALS) & 0xf) == 0xf, "memfd sealed after finish", "seals %#x", fcntl(fd, F_GET_SEALS));
	expect_int("memfd reader open", 0, regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r));
	expect_u64("memfd header count", 2, regionmap_reader_info(r)->count);
	expect_u64("memfd total known at open", 8 * G + 123, regionmap_reader_info(r)->total);
	unit_check(!strcmp(regionmap_reader_info(r)->context, "base:allocation"), "context round trip", "%s", regionmap_reader_info(r)->context);
	expect_int("get record 1", 0, regionmap_reader_get(r, 1, &off, &len));
	unit_check(off == 5 * G && len == 5 * G + 123, "get returns merged record", "%" PRIu64 "+%" PRIu64, off, len);
	expect_int("get past count", -ERANGE, regionmap_reader_get(r, 2, &off, &len));
	expect_int("memfd iteration ends verified", 0, drain(r, &n, &t));
	unit_check(n == 2 && t == 8 * G + 123, "memfd iteration count and total", "%" PRIu64 " %" PRIu64, n, t);
	unit_check(drained[0].off == 0 && drained[0].len == 3 * G && drained[1].off == 5 * G &&
		   drained[1].len == 5 * G + 123, "memfd iteration yields the merged regions",
		   "%" PRIu64 "+%" PRIu64 ", %" PRIu64 "+%" PRIu64, drained[0].off, drained[0].len,
		   drained[1].off, drained[1].len);
	regionmap_reader_free(r);
	close(fd);
}

/* Child: write nrec records of one granule every two into fd, then exit. */
static void produce(int fd, uint64_t nrec, bool finish)
{
	struct regionmap_info i = mkinfo(nrec * 2 * G, G, 0, "qemu:dirty-bitmap:b0");
	struct regionmap_writer *w;
	int e = regionmap_writer_new(fd, &i, REGIONMAP_WRITE_STREAM, &w);

	for (uint64_t k = 0; e == 0 && k < nrec; k++)
		e = regionmap_writer_add(w, k * 2 * G, G);
	if (e == 0 && finish)
		e = regionmap_writer_finish(w);
	_exit(e == 0 ? 0 : 1);
}

static pid_t spawn_producer(uint64_t nrec, bool finish, int *ret_fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		produce(p[1], nrec, finish);
	}
	close(p[1]);
	*ret_fd = p[0];
	return pid;
}

static void test_stream_pipe(void)
{
	struct regionmap_reader *r;
	uint64_t n, t;
	int fd, st;
	pid_t pid = spawn_producer(1000, true, &fd);

	expect_int("stream reader open on pipe", 0, regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r));
	expect_u64("stream header count unknown", REGIONMAP_COUNT_UNKNOWN, regionmap_reader_info(r)->count);
	uint64_t o, l, bad = UINT64_MAX;
	n = t = 0;
	while ((st = regionmap_reader_next(r, &o, &l)) > 0) {
		if ((o != n * 2 * G || l != G) && bad == UINT64_MAX)
			bad = n;
		n++, t += l;
	}
	expect_int("stream iteration ends verified", 0, st);
	unit_check(bad == UINT64_MAX, "stream regions are the ones written (k*2G, G)", "region %" PRIu64 " differs", bad);
	unit_check(n == 1000 && t == 1000 * G, "stream count and total", "%" PRIu64 " %" PRIu64, n, t);
	expect_u64("stream total set after trailer", 1000 * G, regionmap_reader_info(r)->total);
	expect_int("next after end stays 0", 0, regionmap_reader_next(r, &n, &t));
	expect_int("get on a stream", -EOPNOTSUPP, regionmap_reader_get(r, 0, &o, &l));
	regionmap_reader_free(r);
	close(fd);
	waitpid(pid, &st, 0);
	unit_check(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer child succeeded", "status %#x", st);
}

static void test_killed_producer(void)
{
	struct regionmap_reader *r;
	uint64_t off, len, n = 0;
	int fd, e, st;
	pid_t pid = spawn_producer(4u << 20, true, &fd);

	e = regionmap_reader_open(fd, REGIONMAP_READ_STREAM, &r);
	if (e == 0) {
		while ((e = regionmap_reader_next(r, &off, &len)) > 0)
			if (++n == 100000) {
				kill(pid, SIGKILL);
				waitpid(pid, &st, 0);
			}
		regionmap_reader_free(r);
	}
	expect_int("producer SIGKILLed halfway: reader reports truncation", -ENODATA, e);
	unit_check(n >= 100000 && n < (4u << 20), "reader got part of the map before the error", "%" PRIu64, n);
	close(fd);
}

static void test_write_error(void)
{
	struct regionmap_info i = mkinfo(1ull << 40, G, 0, "base:allocation");
	struct regionmap_writer *w;
	int p[2], e = 0;
	uint64_t k;

	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	close(p[0]);
	regionmap_writer_new(p[1], &i, REGIONMAP_WRITE_STREAM, &w);
	for (k = 0; e == 0 && k < 100000; k++)
		e = regionmap_writer_add(w, k * 2 * G, G);
	expect_int("write to a closed pipe fails with EPIPE", -EPIPE, e);
	expect_int("writer stays failed after an I/O error", -EPIPE, regionmap_writer_finish(w));
	regionmap_writer_free(w);
	close(p[1]);
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_big(void)
{
	const uint64_t nrec = 8400000;
	struct regionmap_info i = mkinfo(nrec * 2 * G, G, 0, "qemu:dirty-bitmap:b0");
	struct regionmap_writer *w;
	struct regionmap_reader *r = NULL;
	uint64_t n = 0, t = 0;
	int fd, e;
	double t0 = cpu_now();

	regionmap_memfd_create("big", &fd);
	e = regionmap_writer_new(fd, &i, REGIONMAP_WRITE_MEMFD, &w);
	for (uint64_t k = 0; e == 0 && k < nrec; k++)
		e = regionmap_writer_add(w, k * 2 * G, G);
	if (e == 0)
		e = regionmap_writer_finish(w);
	regionmap_writer_free(w);
	double t1 = cpu_now();
	if (e == 0)
		e = regionmap_reader_open(fd, REGIONMAP_READ_MEMFD, &r);
	if (e == 0)
		e = drain(r, &n, &t);
	double t2 = cpu_now();
	expect_int("8.4M records memfd round trip", 0, e);
	unit_check(n == nrec && t == nrec * G, "8.4M records count and total", "%" PRIu64 " %" PRIu64, n, t);
	unit_comment("8.4M records (%.0f MB): write %.3f s, verify+read %.3f s CPU", (nrec * 16.0) / 1e6,
	             t1 - t0, t2 - t1);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	unit_comment("process so far: user %ld.%03ld s, system %ld.%03ld s", (long)ru.ru_utime.tv_sec,
	             (long)ru.ru_utime.tv_usec / 1000, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec / 1000);
	regionmap_reader_free(r);
	close(fd);
}

static void test_full(void)
{
	struct regionmap_info i = mkinfo(10 * G, G, REGIONMAP_FLAG_FULL, "");
	struct regionmap_writer *w;
	int fd;

	regionmap_memfd_create("full", &fd);
	regionmap_writer_new(fd, &i, REGIONMAP_WRITE_STREAM, &w);
	regionmap_writer_add(w, 0, G);
	expect_int("full map with a partial record refused at finish", -EDOM, regionmap_writer_finish(w));
	regionmap_writer_free(w);
	regionmap_writer_new(fd, &i, REGIONMAP_WRITE_STREAM, &w);
	regionmap_writer_add(w, 0, 10 * G);
	expect_int("full map with one whole record", 0, regionmap_writer_finish(w));
	regionmap_writer_free(w);
	close(fd);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	test_crc();
	test_validation();
	test_after_finish();
	test_unsealable();
	test_merge_memfd();
	test_full();
	test_stream_pipe();
	test_killed_producer();
	test_write_error();
	test_big();
	return unit_exit();
}
