/* SPDX-License-Identifier: GPL-2.0-or-later */
/* nbdattach run: the volumes of one backup (run-volumes.c) and the run itself (cmd-run.c). */
#ifndef NBDATTACH_RUN_H
#define NBDATTACH_RUN_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "devices.h"
#include "discard.h"
#include "runs.h"
#include "state.h"

#define RUN_VOLUMES_MAX 16
#define RUN_FD_ACK 3        /* provider's descriptor for acknowledgements */
#define RUN_FD_MAP0 4       /* provider's descriptor for volume 0's map; volume i: 4 + i */
/* TRIMs in flight on one volume's connection beyond which no more acknowledgements are read
 * until the server answers (the provider waits on a full pipe at worst for the trim timeout). */
#define RUN_TRIMS_BUSY 16

/* Exit statuses of run besides the provider's own (nbdattach(8)). */
#define EXIT_RUN_HELPER 125      /* the helper failed; everything it attached was released */
#define EXIT_RUN_CANNOT_EXEC 126 /* the provider could not be executed */
#define EXIT_RUN_NOT_FOUND 127   /* the provider was not found */

enum map_transport { MAP_MEMFD, MAP_PIPE };

struct volume {
	/* from --volume */
	const char *uri;
	char name[DEV_LABEL_MAX + 1];
	char bitmap[BITMAP_NAME_MAX + 1]; /* "" for a full map */
	uint64_t granularity;
	unsigned connections;
	uint64_t block_size;
	/* while running */
	bool attached, released, dead;
	int64_t dead_since_ms;
	struct state_rec st;
	int map_fd;                  /* memfd, or the read end of the map pipe: the provider's */
	pid_t map_pid;               /* pipe transport: the writer child, reaped at release */
	int map_pidfd;
	int map_status;
	bool map_failed;             /* the writer died other than by our own SIGTERM */
	uint64_t map_count, map_total;
	bool map_counted;
	struct nbd_trimmer *trimmer; /* NULL when discards are off or impossible */
	struct discarder *disc;
	bool fragments_warned;           /* the discarder ran out of room for partial granules */
	uint64_t trimmed, trim_requests; /* kept when disc is freed */
};

struct run_opts {
	struct volume vol[RUN_VOLUMES_MAX];
	unsigned n;
	const char *tag;
	char tag_buf[DEV_LABEL_MAX + 1];
	enum map_transport transport;
	bool discard;
	uint64_t grace_s, timeout, dead_conn_timeout;
	int udev_timeout_ms;
	char **provider;             /* argv after "--" */
};

/* Parses one --volume SPEC into V (one-line usage error printed on failure). */
int volume_parse(const char *spec, struct volume *v);
/* Attaches volume V, produces its map and opens its discard connection. Journal steps and
 * fault points "attach:NAME", "map:NAME". RUN_ID is exported to map writer children. */
int volume_setup(const struct run_opts *o, struct volume *v, struct run_rec *journal, const char *run_id);
/* Reaps a map writer, closes the map, detaches (if attached); 0 or the detach's error. The
 * discard connection is left to volume_close_discards(). IN_USE: the provider is running and
 * may hold the device (a dead volume); otherwise a holder is reported. */
int volume_release(const struct run_opts *o, struct volume *v, bool in_use);
/* Applies one acknowledged range to V's discards: 0, or -EINVAL / -ERANGE for a range that is
 * empty, overflows or runs past the export. A failing discard connection only stops V's
 * discards (with one warning): the backup goes on. */
int volume_ack(struct volume *v, uint64_t offset, uint64_t length);
/* The discard connection's descriptor and events while TRIMs are in flight: 0, or -1. */
int volume_trim_pollfd(const struct volume *v, struct pollfd *ret);
/* After poll (REVENTS 0 when it did not report the descriptor): answers, failures, timeout. */
void volume_trim_dispatch(struct volume *v, short revents);
/* CLOCK_MONOTONIC ms by which the server must answer, -1 when nothing is in flight. */
int64_t volume_trim_deadline(const struct volume *v);
size_t volume_trims_in_flight(const struct volume *v);
/* Keeps the counts and closes V's discard connection; never waits for the server. */
void volume_close_discards(struct volume *v);

/* Writes the journal (step STEP[:NAME]) and then passes the fault point. */
int journal_step(struct run_rec *j, const char *step, const char *name);

#endif
