/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "children.h"
#include "cleanup.h"

extern char **environ;

/* Descriptors above every target number, so that no dup2 in the child overwrites a source
 * another one still needs. */
#define STAGE_BASE 64

static void close_all(int *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] >= 0)
			close(v[i]);
}

static int plan_fds(posix_spawn_file_actions_t *fa, const struct child_fd *fds, size_t nfds,
		    unsigned flags, int *staged)
{
	bool mapped[3] = { false, false, false };

	for (size_t i = 0; i < nfds; i++) {
		staged[i] = fcntl(fds[i].from, F_DUPFD_CLOEXEC, STAGE_BASE);
		if (staged[i] < 0 || fds[i].to < 0 || fds[i].to >= STAGE_BASE)
			return staged[i] < 0 ? -errno : -EINVAL;
		if (fds[i].to < 3)
			mapped[fds[i].to] = true;
	}
	for (int t = 0; t < 3 && (flags & CHILD_NULL_STDIO); t++)
		if (!mapped[t] && posix_spawn_file_actions_addopen(fa, t, "/dev/null", t ? O_WRONLY : O_RDONLY, 0))
			return -ENOMEM;
	for (size_t i = 0; i < nfds; i++)
		if (posix_spawn_file_actions_adddup2(fa, staged[i], fds[i].to))
			return -ENOMEM;
	return 0;
}

static int plan_attr(posix_spawnattr_t *at, unsigned flags)
{
	sigset_t none, all;
	short f = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;

	sigemptyset(&none);
	sigfillset(&all);
	if (flags & CHILD_SETSID)
		f |= POSIX_SPAWN_SETSID;
	if (posix_spawnattr_setsigmask(at, &none) || posix_spawnattr_setsigdefault(at, &all) ||
	    posix_spawnattr_setflags(at, f))
		return -EINVAL;
	return 0;
}

int child_spawn(const char *path, char *const argv[], char *const envp[], const struct child_fd *fds,
		size_t nfds, unsigned flags, pid_t *ret_pid)
{
	bool in_spawn;

	return child_spawn_ex(path, argv, envp, fds, nfds, flags, ret_pid, &in_spawn);
}

int child_spawn_ex(const char *path, char *const argv[], char *const envp[], const struct child_fd *fds,
		   size_t nfds, unsigned flags, pid_t *ret_pid, bool *ret_in_spawn)
{
	_cleanup_free_ int *staged = calloc(nfds ? nfds : 1, sizeof(int));
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	pid_t pid;
	int r;

	if (!staged)
		return -ENOMEM;
	for (size_t i = 0; i < nfds; i++)
		staged[i] = -1;
	if (posix_spawn_file_actions_init(&fa))
		return -ENOMEM;
	if (posix_spawnattr_init(&at)) {
		posix_spawn_file_actions_destroy(&fa);
		return -ENOMEM;
	}
	*ret_in_spawn = false;
	r = plan_fds(&fa, fds, nfds, flags, staged);
	if (r == 0)
		r = plan_attr(&at, flags);
	if (r == 0) {
		/* glibc reports the child's failure (setsid, dup2, exec) as the spawn's error. */
		r = -((flags & CHILD_SEARCH_PATH) ? posix_spawnp : posix_spawn)(&pid, path, &fa, &at, argv,
									envp ? envp : environ);
		*ret_in_spawn = r < 0;
	}
	close_all(staged, nfds);
	posix_spawnattr_destroy(&at);
	posix_spawn_file_actions_destroy(&fa);
	if (r == 0)
		*ret_pid = pid;
	return r;
}

int child_pidfd(pid_t pid, int *ret_fd)
{
	/* pidfds are always close-on-exec. */
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}

int child_signal(int pidfd, int sig)
{
	/* By pidfd: a child that is gone (also reaped behind our back) is never mistaken for
	 * whoever gets its pid next. */
	if (syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}

bool child_exited(int pidfd)
{
	struct pollfd p = { .fd = pidfd, .events = POLLIN };

	return poll(&p, 1, 0) > 0;
}

int child_reap(pid_t pid, int *ret_status)
{
	int st;
	pid_t r;

	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	*ret_status = st;
	return 0;
}

int child_exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

const char *self_exe(void)
{
	static char path[4096];
	ssize_t n;

	if (path[0])
		return path;
	/* The real path, so that the child's comm is "nbdattach", not "exe". */
	n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	if (n <= 0 || n >= (ssize_t)sizeof(path) - 1)
		return "/proc/self/exe";
	path[n] = 0;
	return path;
}
