/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Child processes: spawned with exactly the descriptors we mean to pass, tracked by pidfd and
 * reaped by their own pid (never waitpid(-1): the caller may have children of its own). */
#ifndef NBDATTACH_CHILDREN_H
#define NBDATTACH_CHILDREN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct child_fd {
	int from; /* our descriptor */
	int to;   /* its number in the child */
};

#define CHILD_SETSID     0x1u /* new session: no controlling terminal, not in our process group */
#define CHILD_NULL_STDIO 0x2u /* stdin, stdout, stderr on /dev/null (unless mapped) */
#define CHILD_SEARCH_PATH 0x4u /* PATH lookup when PATH has no slash (posix_spawnp) */

/* Spawns PATH with ARGV and ENVP (NULL: ours); FDS are dup'ed to their numbers in the child,
 * every other descriptor of ours is close-on-exec anyway. Signal mask and dispositions are
 * reset in the child. */
int child_spawn(const char *path, char *const argv[], char *const envp[], const struct child_fd *fds,
		size_t nfds, unsigned flags, pid_t *ret_pid);
/* As child_spawn; on failure *RET_IN_SPAWN says whether the spawn itself failed (fork, or in
 * the child setsid, dup2 or exec: the program is missing, not executable, ...) rather than
 * our preparation of it. */
int child_spawn_ex(const char *path, char *const argv[], char *const envp[], const struct child_fd *fds,
		   size_t nfds, unsigned flags, pid_t *ret_pid, bool *ret_in_spawn);
/* Path of the running nbdattach binary, for re-executing it. */
const char *self_exe(void);
/* pidfd_open(2). */
int child_pidfd(pid_t pid, int *ret_fd);
/* pidfd_send_signal(2). */
int child_signal(int pidfd, int sig);
/* Whether the child behind PIDFD has exited (not waiting). */
bool child_exited(int pidfd);
/* Reaps PID (blocking); *ret_status gets the wait status. */
int child_reap(pid_t pid, int *ret_status);
/* Exit status a shell would report: the code, or 128 + signal. */
int child_exit_code(int status);

#endif
