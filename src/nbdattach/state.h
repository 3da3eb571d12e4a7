/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The state journal: one file per attached device under $NBDATTACH_STATE_DIR (default
 * /run/nbdattach)/devices/nbdN, "key=value" lines, written atomically (temp + rename). The
 * directory is root's, mode 0700; a symlink or a foreign owner is refused. Files are parsed as
 * untrusted input (size cap, each value validated; a well-formed unknown key, a newer
 * version's, is skipped). */
#ifndef NBDATTACH_STATE_H
#define NBDATTACH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STATE_DIR_DEFAULT "/run/nbdattach"
#define STATE_FILE_MAX 8192
#define STATE_URI_MAX 2048
#define STATE_TEXT_MAX 256
/* The longest bitmap name any command takes: a region map carries the meta context
 * "qemu:dirty-bitmap:NAME" in at most REGIONMAP_CONTEXT_MAX (1024) bytes. */
#define BITMAP_NAME_MAX 1006
#define BITMAP_PREFIX "qemu:dirty-bitmap:"

/* The server's unix socket as attach found it (pin.h); KNOWN only for nbd+unix:// URIs. */
struct server_pin {
	bool known;
	uint64_t dev, ino;        /* the socket file's inode */
	uint64_t btime;           /* its birth time in ns, 0 where the filesystem keeps none */
	uint32_t uid;             /* who listens on it (SO_PEERCRED) */
};

struct state_rec {
	uint32_t index;
	char identifier[192];
	char tag[65];
	char name[65];
	char uri[STATE_URI_MAX];
	char export_name[STATE_TEXT_MAX];
	char bitmap[BITMAP_NAME_MAX + 1];
	uint64_t size;
	uint64_t block_size;
	uint32_t connections;
	bool read_only;
	/* "attach" (watched by its monitor, pid), "attaching" (attach has not started the monitor
	 * yet: pid is the attaching helper) or "run" (pid is the run's helper) */
	char owner[12];
	int64_t pid;
	int64_t time;             /* wall-clock seconds when written */
	uint64_t start;           /* pid's start in clock ticks since boot (0: unknown) */
	/* The queue settings the device had before attach changed them (read_ahead_kb, nomerges and
	 * max_sectors_kb), put back before DISCONNECT: the minor outlives us and is handed to the
	 * next user, nbdattach or not. */
	bool saved_queue;
	uint32_t saved_read_ahead_kb, saved_max_sectors_kb, saved_nomerges;
	struct server_pin server;
};

/* Parses one file's bytes (need not be NUL-terminated). -EBADMSG on anything unexpected. */
int state_parse(const char *buf, size_t len, struct state_rec *ret);
/* Whether KEY=VALUE, a key this version does not know, looks like a newer version's (a
 * lower-case letter, then letters, digits and '-'; a printable value): such a line is skipped,
 * so that a downgraded cleanup does not take a live record for garbage. */
bool state_newer_key_ok(const char *key, const char *value);
/* Serialises REC into BUF; -ENOBUFS if too small, -EINVAL for a field state_parse would refuse. */
int state_format(const struct state_rec *rec, char *buf, size_t len, size_t *ret_len);

/* The state directory's path ($NBDATTACH_STATE_DIR or the default). */
const char *state_base(void);
/* 0 when the state directory is usable or absent, else why not: -EINVAL (not an absolute
 * path), -ENOTDIR (not a directory, or a symbolic link), -EPERM (not ours, or group/world
 * accessible); state_base_strerror() says it in words. */
int state_check_base(void);
const char *state_base_strerror(int err);
/* Opens (CREATE: creating) the private subdirectory SUB of the state directory. */
int state_open_dir(const char *sub, bool create, int *ret_fd);

/* Files of the state subdirectories: written to a private temporary name and renamed, read
 * only when they are regular files of ours (at most CAP bytes), removed (0 if already gone). */
int state_file_write(const char *sub, const char *name, const char *buf, size_t len);
int state_file_read(const char *sub, const char *name, char *buf, size_t cap, size_t *ret_len);
int state_file_remove(const char *sub, const char *name);

int state_write(const struct state_rec *rec);
/* -ENOENT when there is no record for INDEX. */
int state_read(uint32_t index, struct state_rec *ret);
int state_remove(uint32_t index);
/* Removes the record of INDEX only if it is IDENTIFIER's (or unreadable). */
int state_remove_if(uint32_t index, const char *identifier);
/* Who owns which device changes only under this lock, held by every nbdattach process from
 * CONNECT to its journal entry and from a final ownership check through DISCONNECT to the
 * removal of the records (never while waiting for udev): an exclusive flock on the state
 * directory, released by state_unlock or by the holder's death. */
int state_lock(int *ret_fd);
void state_unlock(int *fd);
/* Names in the state subdirectory SUB that PARSE accepts, as numbers (sorted, malloc'ed). */
int state_list_dir(const char *sub, int (*parse)(const char *, uint32_t *), uint32_t **ret, size_t *ret_n);
/* Indices with a record (sorted); *ret malloc'ed. */
int state_list(uint32_t **ret, size_t *ret_n);

#endif
