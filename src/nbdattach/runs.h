/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The run journal: runs/PID under the state directory, one per `nbdattach run`, rewritten
 * atomically before each step, so that `nbdattach cleanup` can finish what a killed helper
 * left: its child processes (provider, map writers) are named by pid and start time, so a
 * reused pid is never mistaken for one of them. Devices are in the device journal (owner run,
 * pid of the helper). Parsed as untrusted input.
 */
#ifndef NBDATTACH_RUNS_H
#define NBDATTACH_RUNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RUN_CHILDREN_MAX 64
#define RUN_FILE_MAX 4096

struct run_child {
	int64_t pid;
	uint64_t start; /* start time in clock ticks after boot (/proc/PID/stat field 22) */
};

struct run_rec {
	int64_t pid;
	uint64_t start;
	char step[128];
	struct run_child children[RUN_CHILDREN_MAX];
	unsigned n_children;
};

int run_parse(const char *buf, size_t len, struct run_rec *ret);
int run_format(const struct run_rec *r, char *buf, size_t len, size_t *ret_len);
int run_write(const struct run_rec *r);
int run_read(pid_t pid, struct run_rec *ret);
int run_remove(pid_t pid);
int run_list(uint32_t **ret, size_t *ret_n);

/* Start time of PID from /proc (-ENOENT when it does not exist). */
int proc_start_time(pid_t pid, uint64_t *ret);
/* Whether PID still is the process that started at START. */
bool proc_is(pid_t pid, uint64_t start);
/* Whether the helper that wrote a record under its pid still runs: a process of that pid runs
 * nbdattach and is the one that started at START (clock ticks since boot, as proc_start_time
 * says: immune to wall-clock steps), or, START 0 (unknown: claims), started before WRITTEN
 * (wall-clock seconds, -1 unknown), since a recycled pid belongs to a process started after the
 * record. Start ticks are read in our own time namespace: nbdattach runs in the host's. */
bool helper_alive(pid_t pid, uint64_t start, int64_t written);

/* SIGKILLs PID if it still is the process that started at START (0, unknown: never). */
void run_kill_started(pid_t pid, uint64_t start);
/* SIGKILLs every process that carries NBDATTACH_RUN_ID=ID (PID:START of a run's helper) in its
 * environment, but ourselves and the N_SPARE pids of SPARE: a run's children and whatever they
 * started, those that left the provider's process group (setsid, daemons) included. Each is
 * checked through a pidfd opened first, so a recycled pid is never killed. */
void run_kill_id(const char *id, const pid_t *spare, size_t n_spare);

#endif
