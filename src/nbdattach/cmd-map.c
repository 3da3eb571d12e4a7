/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * nbdattach map: publish a QEMU dirty bitmap (meta context qemu:dirty-bitmap:NAME) as a region
 * map (binary, regionmap(5)), as "OFFSET LENGTH" text, or exactly as `nbdinfo --map` prints it.
 * Extents stream from block status straight to the output: memory stays constant however many
 * extents the export has (nbdinfo --map buffers them all). The binary and text forms end with a
 * trailer or "end" line; the nbdinfo form has none, so a failed walk leaves a prefix that looks
 * like a shorter map: only the exit status tells (nbdattach(8)).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blockstatus.h"
#include "cleanup.h"
#include "cmd-util.h"
#include "commands.h"
#include "log.h"
#include "pin.h"
#include "regionmap.h"
#include "state.h"

enum map_format { FMT_BINARY, FMT_TEXT, FMT_NBDINFO };

struct map_opts {
	const char *uri;
	const char *bitmap; /* NULL: full map */
	enum map_format format;
	const char *output; /* NULL: stdout or output_fd */
	int output_fd;      /* -1: none given */
	uint64_t granularity;
	struct server_pin server; /* known: --server-uid given (uid only) */
	int socket_fd;      /* -1: connect by the socket= path */
};

/* Text output goes through this buffer with write(2): no stdio, so errors are ours to see. */
struct outbuf {
	int fd;
	size_t len;
	char buf[1 << 16];
};

struct sink {
	const struct map_opts *o;
	uint64_t size;
	struct regionmap_writer *w;
	struct outbuf *out;
	bool dirty_pending; /* a merged dirty run [doff, doff+dlen) not yet emitted */
	uint64_t doff, dlen;
	bool run_pending; /* nbdinfo: a run of one extent type not yet printed */
	uint64_t roff, rlen;
	uint32_t rtype;
	uint64_t count, total;
	char why[256];
};

/* ---- output buffer ---- */

static int out_flush(struct outbuf *b)
{
	size_t done = 0;

	while (done < b->len) {
		ssize_t n = write(b->fd, b->buf + done, b->len - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	b->len = 0;
	return 0;
}

/* Right-aligned decimal in at least width columns (printf "%*" PRIu64 without its cost). */
static char *put_u64(char *p, uint64_t v, int width)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (int i = n; i < width; i++)
		*p++ = ' ';
	while (n)
		*p++ = tmp[--n];
	return p;
}

static int out_line(struct outbuf *b, const char *line, size_t len)
{
	int r;

	if (b->len + len > sizeof b->buf && (r = out_flush(b)) < 0)
		return r;
	memcpy(b->buf + b->len, line, len);
	b->len += len;
	return 0;
}

/* ---- emitting dirty regions (binary, text) ---- */

static int emit_region(struct sink *s, uint64_t off, uint64_t len)
{
	uint64_t g = s->o->granularity, mask = g - 1; /* a power of two */
	char line[64], *p = line;

	/* The map promises granularity-aligned regions (regionmap(5)); QEMU only reports bitmap
	 * granules, so a misaligned region means a wrong --granularity or a broken server. */
	if ((off & mask) || ((len & mask) && off + len != s->size)) {
		snprintf(s->why, sizeof s->why,
			 "dirty extent %" PRIu64 "+%" PRIu64 " not aligned to granularity %" PRIu64
			 "; pass --granularity", off, len, g);
		return -EINVAL;
	}
	s->count++;
	s->total += len;
	if (s->w)
		return regionmap_writer_add(s->w, off, len);
	p = put_u64(p, off, 0);
	*p++ = ' ';
	p = put_u64(p, len, 0);
	*p++ = '\n';
	return out_line(s->out, line, (size_t)(p - line));
}

static int flush_dirty(struct sink *s)
{
	if (!s->dirty_pending)
		return 0;
	s->dirty_pending = false;
	return emit_region(s, s->doff, s->dlen);
}

/* Server extents may split one dirty run (at request boundaries): merge before emitting. */
static int on_dirty(struct sink *s, uint64_t off, uint64_t len, uint32_t flags)
{
	int r;

	if (!(flags & 1)) /* bit 0 of qemu:dirty-bitmap is "dirty"; the rest is reserved */
		return flush_dirty(s);
	if (s->dirty_pending && s->doff + s->dlen == off) {
		s->dlen += len;
		return 0;
	}
	if ((r = flush_dirty(s)) < 0)
		return r;
	s->dirty_pending = true;
	s->doff = off;
	s->dlen = len;
	return 0;
}

/* ---- nbdinfo --map compatible output ---- */

/* nbdinfo (libnbd 1.14, info/map.c) prints "%10" PRIu64 "  %10" PRIu64 "  %3" PRIu32, then
 * "  DESCRIPTION" when it knows one (for a dirty bitmap: 0 "clean", 1 "dirty"), and merges
 * adjacent extents of the same type. It prints clean extents too. */
static int print_run(struct sink *s)
{
	char line[96], *p = line;
	const char *d = s->rtype == 0 ? "clean" : s->rtype == 1 ? "dirty" : NULL;

	if (!s->run_pending)
		return 0;
	s->run_pending = false;
	p = put_u64(p, s->roff, 10);
	*p++ = ' ', *p++ = ' ';
	p = put_u64(p, s->rlen, 10);
	*p++ = ' ', *p++ = ' ';
	p = put_u64(p, s->rtype, 3);
	if (d) {
		*p++ = ' ', *p++ = ' ';
		memcpy(p, d, 5);
		p += 5;
	}
	*p++ = '\n';
	return out_line(s->out, line, (size_t)(p - line));
}

static int on_nbdinfo(struct sink *s, uint64_t off, uint64_t len, uint32_t flags)
{
	int r;

	if (s->run_pending && s->rtype == flags && s->roff + s->rlen == off) {
		s->rlen += len;
		return 0;
	}
	if ((r = print_run(s)) < 0)
		return r;
	s->run_pending = true;
	s->roff = off;
	s->rlen = len;
	s->rtype = flags;
	return 0;
}

static int on_extent(void *opaque, uint64_t off, uint64_t len, uint32_t flags)
{
	struct sink *s = opaque;

	if (s->o->format == FMT_NBDINFO)
		return on_nbdinfo(s, off, len, flags);
	return on_dirty(s, off, len, flags);
}

/* ---- options ---- */

static int parse_format(const char *arg, enum map_format *ret)
{
	static const char *const names[] = { "binary", "text", "nbdinfo" };

	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(arg, names[i])) {
			*ret = (enum map_format)i;
			return 0;
		}
	log_usage("invalid --format '%s' (expected binary, text or nbdinfo)", arg);
	return -EINVAL;
}

static int parse_bitmap(const char *arg)
{
	_Static_assert(sizeof(BITMAP_PREFIX) - 1 + BITMAP_NAME_MAX == REGIONMAP_CONTEXT_MAX,
		       "a map's context holds the longest bitmap name");
	return parse_bitmap_opt("--bitmap name", arg);
}

static int parse_opt(struct map_opts *o, int c, const char *arg, bool *full)
{
	uint64_t v;

	switch (c) {
	case 'b': o->bitmap = arg; return parse_bitmap(arg);
	case 'F': *full = true; return 0;
	case 'f': return parse_format(arg, &o->format);
	case 'o': o->output = arg; return 0;
	case 'd':
		if (parse_num_opt("--output-fd", arg, 0, INT32_MAX, &v) < 0)
			return -EINVAL;
		o->output_fd = (int)v;
		return 0;
	case 'g':
		if (parse_pow2_opt("--granularity", arg, 1, REGIONMAP_GRANULARITY_MAX, &v) < 0)
			return -EINVAL;
		o->granularity = v;
		return 0;
	case 'S':
		if (parse_num_opt("--socket-fd", arg, 0, INT32_MAX, &v) < 0)
			return -EINVAL;
		o->socket_fd = (int)v;
		return 0;
	case 'u':
		if (parse_num_opt("--server-uid", arg, 0, UINT32_MAX, &v) < 0)
			return -EINVAL;
		o->server = (struct server_pin){ .known = true, .uid = (uint32_t)v };
		return 0;
	}
	return -EINVAL;
}

static int check_opts(const struct map_opts *o, bool full)
{
	if (full && o->bitmap) {
		log_usage("map: --bitmap and --full are mutually exclusive");
		return -EINVAL;
	}
	if (o->output && o->output_fd >= 0) {
		log_usage("map: --output and --output-fd are mutually exclusive");
		return -EINVAL;
	}
	if (o->output && !*o->output) {
		log_usage("map: invalid --output ''");
		return -EINVAL;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct map_opts *o)
{
	static const struct option lo[] = {
		{ "bitmap", required_argument, NULL, 'b' },
		{ "full", no_argument, NULL, 'F' },
		{ "format", required_argument, NULL, 'f' },
		{ "output", required_argument, NULL, 'o' },
		{ "output-fd", required_argument, NULL, 'd' },
		{ "granularity", required_argument, NULL, 'g' },
		{ "server-uid", required_argument, NULL, 'u' },
		{ "socket-fd", required_argument, NULL, 'S' },
		OPT_HELP,
		{ 0 }
	};
	bool full = false;
	int c;

	*o = (struct map_opts){ .format = FMT_BINARY, .output_fd = -1, .granularity = 65536, .socket_fd = -1 };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		if (c == '?' || c == ':')
			return usage_bad_option(argv[optind - 1], c);
		if (c == 'h')
			return PARSE_HELP;
		if (parse_opt(o, c, optarg, &full) < 0)
			return -EINVAL;
	}
	if (optind + 1 != argc) {
		log_usage(optind == argc ? "map: missing URI" : "map: too many arguments (one URI expected)");
		return -EINVAL;
	}
	o->uri = argv[optind];
	return check_opts(o, full);
}

/* ---- output target ---- */

struct target {
	int fd;
	char *tmp; /* temporary file renamed onto o->output on success */
};

/* A root helper writing into a directory someone else may control: create a fresh file with
 * O_EXCL|O_NOFOLLOW, mode 0600, and rename it into place only once the map is complete. */
static int target_open(const struct map_opts *o, struct target *t)
{
	const char *slash;
	int fd;

	*t = (struct target){ .fd = o->output_fd >= 0 ? o->output_fd : STDOUT_FILENO };
	if (!o->output)
		return 0;
	slash = strrchr(o->output, '/');
	if (asprintf(&t->tmp, "%.*s.nbdattach-map-XXXXXX", slash ? (int)(slash - o->output + 1) : 0,
		     o->output) < 0) {
		t->tmp = NULL;
		return -ENOMEM;
	}
	fd = mkostemp(t->tmp, O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		int err = -errno;
		free(t->tmp);
		t->tmp = NULL;
		return err;
	}
	t->fd = fd;
	return 0;
}

static int target_commit(const struct map_opts *o, struct target *t)
{
	if (!t->tmp)
		return 0;
	if (fdatasync(t->fd) < 0 || rename(t->tmp, o->output) < 0)
		return -errno;
	free(t->tmp);
	t->tmp = NULL;
	return 0;
}

static void target_abort(struct target *t)
{
	if (!t->tmp)
		return;
	unlink(t->tmp);
	close(t->fd);
	free(t->tmp);
	t->tmp = NULL;
}

static void target_close(struct target *t)
{
	if (t->tmp)
		target_abort(t);
	else if (t->fd > STDERR_FILENO && t->fd != -1)
		close(t->fd);
}

/* ---- the command ---- */

static int writer_start(struct sink *s, int fd, const char *context)
{
	struct regionmap_info info = {
		.version = REGIONMAP_VERSION,
		.flags = s->o->bitmap ? 0 : REGIONMAP_FLAG_FULL,
		.export_size = s->size,
		.granularity = s->o->granularity,
	};
	int seals = fcntl(fd, F_GET_SEALS);
	/* A sealable memfd handed in by a caller gets the count patched into its header and is
	 * sealed, so the reader can random-access it. F_GET_SEALS alone proves nothing: it works on
	 * every shmem file, and a tmpfs file (--output under /dev/shm) or a memfd created without
	 * MFD_ALLOW_SEALING carries F_SEAL_SEAL from birth (mm/shmem.c), so it can never be sealed
	 * and gets the plain stream form. */
	unsigned mode = seals >= 0 && !(seals & F_SEAL_SEAL) ? REGIONMAP_WRITE_MEMFD
							      : REGIONMAP_WRITE_STREAM;

	snprintf(info.context, sizeof info.context, "%s", context ? context : "");
	return regionmap_writer_new(fd, &info, mode, &s->w);
}

static int sink_finish(struct sink *s)
{
	char line[80], *p = line;
	int r;

	if (s->o->format == FMT_NBDINFO)
		r = print_run(s);
	else
		r = flush_dirty(s);
	if (r < 0)
		return r;
	if (s->w)
		return regionmap_writer_finish(s->w);
	if (s->o->format == FMT_TEXT) {
		memcpy(p, "end ", 4);
		p = put_u64(p + 4, s->count, 0);
		*p++ = ' ';
		p = put_u64(p, s->total, 0);
		*p++ = '\n';
		if ((r = out_line(s->out, line, (size_t)(p - line))) < 0)
			return r;
	}
	return out_flush(s->out);
}

/* --full, or a whole map as nbdinfo would show one dirty extent: no block status at all. */
static int produce(struct sink *s, struct blockstatus *bs)
{
	int r;

	if (!s->o->bitmap) {
		r = s->size ? on_extent(s, 0, s->size, 1) : 0;
		return r < 0 ? r : sink_finish(s);
	}
	r = blockstatus_walk(bs, on_extent, s);
	return r < 0 ? r : sink_finish(s);
}

static int run_map(const struct map_opts *o, struct blockstatus *bs, int fd, const char *context,
		   uint64_t *ret_count, uint64_t *ret_total)
{
	_cleanup_free_ struct outbuf *out = NULL;
	struct sink s = { .o = o, .size = blockstatus_size(bs) };
	int r;

	if (o->format == FMT_BINARY) {
		r = writer_start(&s, fd, context);
		if (r < 0) {
			log_error("cannot map '%s': cannot start the map: %s", o->uri, regionmap_strerror(r));
			return r;
		}
	} else {
		out = calloc(1, sizeof *out);
		if (!out)
			return -ENOMEM;
		out->fd = fd;
		s.out = out;
	}
	r = produce(&s, bs);
	regionmap_writer_free(s.w);
	if (r == 0 && ret_count)
		*ret_count = s.count, *ret_total = s.total;
	if (r < 0 && s.why[0])
		log_error("cannot map '%s': %s", o->uri, s.why);
	else if (r < 0 && blockstatus_error(bs))
		log_error("cannot map '%s': %s", o->uri, blockstatus_error(bs));
	else if (r < 0)
		log_error("cannot map '%s': %s", o->uri, strerror(-r));
	return r;
}

static int fail_map(const struct map_opts *o, const char *why)
{
	log_error("cannot map '%s': %s", o->uri, why);
	return EXIT_FAIL;
}

/* A region map needs a size (regionmap(5)); nbdinfo prints nothing for an empty export, and
 * so does its form here. */
static int connect_export(const struct map_opts *o, const char *connect, const char *context,
			  const struct server_pin *server, struct blockstatus **ret)
{
	int r = blockstatus_connect(connect, context, server, ret);

	if (r < 0)
		fail_map(o, blockstatus_error(*ret) ? blockstatus_error(*ret) : strerror(-r));
	else if (blockstatus_size(*ret) == 0 && o->format != FMT_NBDINFO) {
		fail_map(o, "export is empty");
		r = -EINVAL;
	}
	return r;
}

int cmd_map(int argc, char **argv)
{
	_cleanup_free_ char *context = NULL;
	struct blockstatus *bs = NULL;
	char pinned[STATE_URI_MAX + 32];
	const char *connect;
	struct map_opts o;
	struct target t;
	int r;

	r = parse_args(argc, argv, &o);
	if (r)
		return r < 0 ? EXIT_USAGE : command_help(argv[0]);
	connect = o.uri;
	if (usage_bad_uri("map", o.uri) < 0)
		return EXIT_USAGE;
	if ((o.server.known || o.socket_fd >= 0) && strncmp(o.uri, "nbd+unix://", 11)) {
		log_usage("map: %s needs an nbd+unix:// URI", o.server.known ? "--server-uid" : "--socket-fd");
		return EXIT_USAGE;
	}
	/* run's map writer: through the socket its parent pinned (pin.h), passed open */
	if (o.socket_fd >= 0) {
		struct stat st;

		if (fstat(o.socket_fd, &st) < 0 || !S_ISSOCK(st.st_mode))
			return fail_map(&o, "--socket-fd does not name an open socket");
		(void)fcntl(o.socket_fd, F_SETFD, FD_CLOEXEC);
		r = pin_uri_for_fd(o.uri, o.socket_fd, pinned, sizeof(pinned));
		if (r < 0)
			return fail_map(&o, strerror(-r));
		connect = pinned;
	}
	if (o.bitmap && asprintf(&context, BITMAP_PREFIX "%s", o.bitmap) < 0)
		return fail_map(&o, strerror(ENOMEM));
	r = connect_export(&o, connect, context, &o.server, &bs);
	if (r < 0) {
		blockstatus_free(bs);
		return EXIT_FAIL;
	}
	r = target_open(&o, &t);
	if (r < 0) {
		blockstatus_free(bs);
		log_error("cannot map '%s': cannot create '%s': %s", o.uri, o.output, strerror(-r));
		return EXIT_FAIL;
	}
	r = run_map(&o, bs, t.fd, context, NULL, NULL);
	blockstatus_free(bs);
	if (r == 0 && (r = target_commit(&o, &t)) < 0)
		log_error("cannot map '%s': cannot write '%s': %s", o.uri, o.output, strerror(-r));
	target_close(&t);
	return r < 0 ? EXIT_FAIL : EXIT_OK;
}

int map_binary(const char *uri, const char *connect, const struct server_pin *server, const char *bitmap,
	       uint64_t granularity, int fd, uint64_t *ret_count, uint64_t *ret_total)
{
	struct map_opts o = { .uri = uri, .bitmap = bitmap, .format = FMT_BINARY, .output_fd = fd,
			      .granularity = granularity };
	_cleanup_free_ char *context = NULL;
	struct blockstatus *bs = NULL;
	int r;

	if (bitmap && asprintf(&context, BITMAP_PREFIX "%s", bitmap) < 0)
		return -ENOMEM;
	r = connect_export(&o, connect, context, server, &bs);
	if (r == 0)
		r = run_map(&o, bs, fd, context, ret_count, ret_total);
	blockstatus_free(bs);
	return r;
}
