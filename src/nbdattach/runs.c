/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "children.h"
#include "cleanup.h"
#include "devices.h"
#include "runs.h"
#include "state.h"

DEFINE_CLEANUP(DIR *, closedir)

static int parse_dec(const char *v, uint64_t max, uint64_t *ret)
{
	return parse_decimal(v, max, ret) < 0 ? -EBADMSG : 0;
}

static int parse_child(const char *v, struct run_rec *r)
{
	char pid[24];
	const char *colon = strchr(v, ':');
	uint64_t p, s;

	if (!colon || colon - v >= (ptrdiff_t)sizeof(pid) || r->n_children >= RUN_CHILDREN_MAX)
		return -EBADMSG;
	memcpy(pid, v, (size_t)(colon - v));
	pid[colon - v] = 0;
	if (parse_dec(pid, INT32_MAX, &p) < 0 || p == 0 || parse_dec(colon + 1, UINT64_MAX, &s) < 0)
		return -EBADMSG;
	r->children[r->n_children++] = (struct run_child){ .pid = (int64_t)p, .start = s };
	return 0;
}

static int parse_step(const char *v, struct run_rec *r)
{
	size_t n = strlen(v);

	if (n == 0 || n >= sizeof(r->step) || strspn(v, "abcdefghijklmnopqrstuvwxyz:-_.0123456789"
					      "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != n)
		return -EBADMSG;
	memcpy(r->step, v, n + 1);
	return 0;
}

/* One "key=value" line; SEEN guards the single-valued keys. A newer version's key is skipped:
 * cleanup removes a run record it cannot read, and that run's processes would then outlive it. */
static int parse_line(char *line, struct run_rec *r, unsigned *seen)
{
	char *v = strchr(line, '=');
	uint64_t x;

	if (!v)
		return -EBADMSG;
	*v++ = 0;
	if (!strcmp(line, "child"))
		return parse_child(v, r);
	if (!strcmp(line, "pid") && !(*seen & 1)) {
		*seen |= 1;
		if (parse_dec(v, INT32_MAX, &x) < 0 || x == 0)
			return -EBADMSG;
		r->pid = (int64_t)x;
		return 0;
	}
	if (!strcmp(line, "start") && !(*seen & 2)) {
		*seen |= 2;
		return parse_dec(v, UINT64_MAX, &r->start);
	}
	if (!strcmp(line, "step") && !(*seen & 4)) {
		*seen |= 4;
		return parse_step(v, r);
	}
	if (!strcmp(line, "pid") || !strcmp(line, "start") || !strcmp(line, "step"))
		return -EBADMSG; /* twice */
	return state_newer_key_ok(line, v) ? 0 : -EBADMSG;
}

int run_parse(const char *buf, size_t len, struct run_rec *ret)
{
	struct run_rec r = { 0 };
	char line[256];
	unsigned seen = 0;
	size_t pos = 0;

	if (len == 0 || len > RUN_FILE_MAX || buf[len - 1] != '\n' || memchr(buf, 0, len))
		return -EBADMSG;
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t n = (size_t)(nl - (buf + pos));

		if (n >= sizeof(line))
			return -EBADMSG;
		memcpy(line, buf + pos, n);
		line[n] = 0;
		if (parse_line(line, &r, &seen) < 0)
			return -EBADMSG;
		pos += n + 1;
	}
	if (seen != 7)
		return -EBADMSG;
	*ret = r;
	return 0;
}

int run_format(const struct run_rec *r, char *buf, size_t len, size_t *ret_len)
{
	size_t pos;
	int n = snprintf(buf, len, "pid=%" PRId64 "\nstart=%" PRIu64 "\nstep=%s\n", r->pid, r->start, r->step);

	if (n < 0 || (size_t)n >= len)
		return -ENOBUFS;
	pos = (size_t)n;
	for (unsigned i = 0; i < r->n_children; i++) {
		n = snprintf(buf + pos, len - pos, "child=%" PRId64 ":%" PRIu64 "\n", r->children[i].pid,
			     r->children[i].start);
		if (n < 0 || (size_t)n >= len - pos)
			return -ENOBUFS;
		pos += (size_t)n;
	}
	if (pos > RUN_FILE_MAX)
		return -ENOBUFS;
	*ret_len = pos;
	return 0;
}

int run_write(const struct run_rec *r)
{
	char buf[RUN_FILE_MAX + 1], name[24];
	size_t len;
	int e = run_format(r, buf, sizeof(buf), &len);

	if (e < 0)
		return e;
	snprintf(name, sizeof(name), "%" PRId64, r->pid);
	return state_file_write("runs", name, buf, len);
}

int run_read(pid_t pid, struct run_rec *ret)
{
	char buf[RUN_FILE_MAX + 1], name[24];
	size_t n;
	int e;

	snprintf(name, sizeof(name), "%ld", (long)pid);
	e = state_file_read("runs", name, buf, sizeof(buf), &n);
	if (e == 0)
		e = run_parse(buf, n, ret);
	return e == 0 && ret->pid != pid ? -EBADMSG : e;
}

int run_remove(pid_t pid)
{
	char name[24];

	snprintf(name, sizeof(name), "%ld", (long)pid);
	return state_file_remove("runs", name);
}

static int parse_pid_name(const char *s, uint32_t *ret)
{
	uint64_t v;

	if (parse_dec(s, INT32_MAX, &v) < 0 || v == 0)
		return -EINVAL;
	*ret = (uint32_t)v;
	return 0;
}

int run_list(uint32_t **ret, size_t *ret_n)
{
	return state_list_dir("runs", parse_pid_name, ret, ret_n);
}

int proc_start_time(pid_t pid, uint64_t *ret)
{
	char path[64], buf[1024], *p;
	int r;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	r = read_first_line(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	/* comm may hold spaces and parentheses: fields resume after the last ')'. Field 22 is the
	 * 20th after it (state is field 3). */
	p = strrchr(buf, ')');
	if (!p)
		return -EIO;
	for (int field = 2; field < 22; field++) {
		p = strchr(p + 1, ' ');
		if (!p)
			return -EIO;
	}
	return sscanf(p + 1, "%" SCNu64, ret) == 1 ? 0 : -EIO;
}

bool proc_is(pid_t pid, uint64_t start)
{
	uint64_t s;

	return pid > 0 && proc_start_time(pid, &s) == 0 && s == start;
}

/* When process PID started, in wall-clock seconds; -1 if unknown. */
static int64_t started_at(pid_t pid)
{
	struct timespec now, up;
	uint64_t ticks;
	long hz = sysconf(_SC_CLK_TCK);

	if (hz <= 0 || proc_start_time(pid, &ticks) < 0 || clock_gettime(CLOCK_REALTIME, &now) < 0 ||
	    clock_gettime(CLOCK_BOOTTIME, &up) < 0)
		return -1;
	return (int64_t)now.tv_sec - ((int64_t)up.tv_sec - (int64_t)(ticks / (uint64_t)hz));
}

bool helper_alive(pid_t pid, uint64_t start_ticks, int64_t written)
{
	char path[64], comm[32] = "";
	int64_t start;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/comm", (long)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = 0;
	fclose(f);
	if (strcmp(comm, "nbdattach\n"))
		return false;
	if (start_ticks)
		return proc_is(pid, start_ticks);
	start = started_at(pid);
	return written < 0 || start < 0 || start <= written + 2; /* the clocks' rounding */
}

/* Does process PID carry NBDATTACH_RUN_ID=ID in its environment (a run's child or one of
 * their descendants)? Read to its end: a shell between the provider and a descendant puts the
 * variables in an order of its own, and an environment may be megabytes long. Only a whole
 * entry matches, never a prefix of a longer id. */
static bool has_run_id(const char *pid, const char *id)
{
	char path[64], buf[65536], want[80];
	_cleanup_close_ int fd = -1;
	size_t wl, at = 0; /* bytes of the current entry that matched WANT so far */
	bool miss = false; /* the current entry already differs */
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%s/environ", pid);
	snprintf(want, sizeof(want), "NBDATTACH_RUN_ID=%s", id);
	wl = strlen(want);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t i = 0; i < n; i++) {
			if (buf[i] == '\0') {
				if (!miss && at == wl)
					return true;
				at = 0, miss = false;
			} else if (!miss && at < wl && buf[i] == want[at]) {
				at++;
			} else {
				miss = true;
			}
		}
	return !miss && at == wl; /* a last entry without its NUL (an environment rewritten) */
}

/* SIGKILLs PID if it carries run id ID or, ID NULL, if it is the process that started at START
 * (0, unknown: never); never ourselves. The pidfd is opened first, so the process checked is
 * the one killed, whoever gets the pid after. */
static void kill_checked(pid_t pid, uint64_t start, const char *pid_name, const char *id)
{
	_cleanup_close_ int fd = -1;

	if (pid <= 0 || pid == getpid() || (!id && !start) || child_pidfd(pid, &fd) < 0)
		return;
	if (id ? has_run_id(pid_name, id) : proc_is(pid, start))
		(void)child_signal(fd, SIGKILL);
}

void run_kill_started(pid_t pid, uint64_t start)
{
	kill_checked(pid, start, NULL, NULL);
}

void run_kill_id(const char *id, const pid_t *spare, size_t n_spare)
{
	_cleanup_(closedirp) DIR *d = opendir("/proc");
	struct dirent *de;

	while (d && (de = readdir(d))) {
		pid_t pid = (pid_t)atol(de->d_name);
		size_t k = 0;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		while (k < n_spare && spare[k] != pid)
			k++;
		if (k == n_spare)
			kill_checked(pid, 0, de->d_name, id);
	}
}
