/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Region map reader. Both modes run the same sequential parser over a 64 KiB buffer: a stream
 * is read with read(2), a memfd with pread(2) from a file offset. A memfd is parsed once at
 * open (records, trailer, checksum) and then again, from the first record, for the caller.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

/* regionmap.h promises all four; F_SEAL_SEAL also keeps the set stable for the reader. */
#define NEED_SEALS (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL)

struct regionmap_reader {
	int fd;
	unsigned mode;
	int err;             /* sticky error */
	bool done;           /* trailer verified */
	bool crc_on;
	bool verified;       /* memfd: already verified at open, skip the checksum again */
	uint32_t crc;
	uint64_t hdr_len;
	uint64_t hdr_count;
	uint64_t foff;       /* memfd: next file offset to pread */
	uint64_t index;      /* verified memfd: records handed out */
	struct rm_check chk;
	struct regionmap_info info;
	size_t pos, end, crc_pos;
	uint8_t buf[RM_BUFSZ];
};

static ssize_t src_read(struct regionmap_reader *r, uint8_t *p, size_t len)
{
	ssize_t n;

	do {
		if (r->mode == REGIONMAP_READ_MEMFD)
			n = pread(r->fd, p, len, (off_t)r->foff);
		else
			n = read(r->fd, p, len);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	r->foff += (uint64_t)n;
	return n;
}

static void crc_catch_up(struct regionmap_reader *r)
{
	if (r->crc_on)
		r->crc = rm_crc32c_update(r->crc, r->buf + r->crc_pos, r->pos - r->crc_pos);
	r->crc_pos = r->pos;
}

/* Slow path of fill(): make at least need bytes available at buf + pos; -ENODATA if the input ends first. */
static int refill(struct regionmap_reader *r, size_t need)
{
	crc_catch_up(r);
	memmove(r->buf, r->buf + r->pos, r->end - r->pos);
	r->end -= r->pos;
	r->pos = r->crc_pos = 0;
	while (r->end < need) {
		ssize_t n = src_read(r, r->buf + r->end, RM_BUFSZ - r->end);
		if (n < 0)
			return (int)n;
		if (n == 0)
			return -ENODATA;
		r->end += (size_t)n;
	}
	return 0;
}

static int parse_fixed(struct regionmap_reader *r, const uint8_t *h)
{
	struct regionmap_info *i = &r->info;

	if (memcmp(h, RM_MAGIC, RM_MAGIC_LEN) != 0)
		return -EBADMSG;
	i->version = rm_get32(h + RM_OFF_VERSION);
	if (i->version != REGIONMAP_VERSION)
		return -EPROTONOSUPPORT;
	i->flags = rm_get32(h + RM_OFF_FLAGS);
	i->export_size = rm_get64(h + RM_OFF_SIZE);
	i->granularity = rm_get64(h + RM_OFF_GRAN);
	r->hdr_count = rm_get64(h + RM_OFF_COUNT);
	/* A stream's header count is unverified until the trailer (it may even be a real count,
	 * from a memfd-mode file read as a stream): callers see it only once it is checked. A
	 * memfd is verified before open returns. */
	i->count = r->mode == REGIONMAP_READ_MEMFD ? r->hdr_count : REGIONMAP_COUNT_UNKNOWN;
	if ((i->flags & ~RM_KNOWN_FLAGS) || i->export_size == 0 || !rm_is_pow2(i->granularity) ||
	    i->granularity > REGIONMAP_GRANULARITY_MAX || rm_get16(h + RM_OFF_CTXLEN) > REGIONMAP_CONTEXT_MAX)
		return -EINVAL;
	for (unsigned k = RM_OFF_RESERVED; k < RM_HDR_FIXED; k++)
		if (h[k])
			return -EINVAL;
	r->hdr_len = rm_hdr_len(rm_get16(h + RM_OFF_CTXLEN));
	return 0;
}

static int parse_context(struct regionmap_reader *r, const uint8_t *h)
{
	size_t len = rm_get16(h + RM_OFF_CTXLEN);

	if (!rm_context_ok((const char *)h + RM_HDR_FIXED, len))
		return -EINVAL;
	for (size_t k = RM_HDR_FIXED + len; k < r->hdr_len; k++)
		if (h[k])
			return -EINVAL;
	memcpy(r->info.context, h + RM_HDR_FIXED, len);
	r->info.context[len] = '\0';
	return 0;
}

static inline int fill(struct regionmap_reader *r, size_t need)
{
	return r->end - r->pos >= need ? 0 : refill(r, need);
}

/* Read and check the header; leaves pos at the first record. */
static int read_header(struct regionmap_reader *r)
{
	int e = fill(r, RM_HDR_FIXED);

	if (e < 0)
		return e;
	e = parse_fixed(r, r->buf + r->pos);
	if (e < 0)
		return e;
	e = fill(r, r->hdr_len);
	if (e < 0)
		return e;
	e = parse_context(r, r->buf + r->pos);
	if (e < 0)
		return e;
	/* The checksum covers the header as streamed, with the count unknown (regionmap(5)). */
	rm_put64(r->buf + r->pos + RM_OFF_COUNT, REGIONMAP_COUNT_UNKNOWN);
	r->pos += r->hdr_len;
	rm_check_init(&r->chk, r->info.export_size, r->info.granularity, r->info.flags);
	return 0;
}

static int check_record(struct regionmap_reader *r, uint64_t off, uint64_t len)
{
	struct rm_check *c = &r->chk;
	int e = rm_check_shape(c, off, len);

	if (e < 0)
		return e;
	if (c->count > 0 && off <= c->end)
		return -EDOM; /* unsorted, overlapping or touching (the writer merges those) */
	if ((c->flags & REGIONMAP_FLAG_FULL) && (off != 0 || len != c->export_size))
		return -EDOM;
	c->end = off + len;
	c->count++;
	c->total += len;
	return 0;
}

/* The input must end right after the trailer. */
static int expect_eof(struct regionmap_reader *r)
{
	uint8_t b;
	ssize_t n;

	if (r->pos != r->end)
		return -EBADMSG;
	n = src_read(r, &b, 1);
	if (n < 0)
		return (int)n;
	return n == 0 ? 0 : -EBADMSG;
}

static int read_trailer(struct regionmap_reader *r)
{
	const uint8_t *t;
	uint64_t count, total;
	int e;

	crc_catch_up(r);
	r->crc_on = false;
	e = fill(r, RM_TRAILER);
	if (e < 0)
		return e;
	t = r->buf + r->pos;
	count = rm_get64(t + 16);
	total = rm_get64(t + 24);
	if (memcmp(t, RM_TRAILER_MAGIC, RM_TRAILER_MAGIC_LEN) != 0 || count != r->chk.count ||
	    total != r->chk.total || rm_get32(t + 32) != ~r->crc || rm_get32(t + 36) != 0 ||
	    (r->hdr_count != REGIONMAP_COUNT_UNKNOWN && r->hdr_count != count))
		return -EBADMSG;
	/* An intact FULL map without its one record: wrong regions, as check_record says. */
	if ((r->chk.flags & REGIONMAP_FLAG_FULL) && count != 1)
		return -EDOM;
	r->pos += RM_TRAILER;
	return expect_eof(r);
}

static int next_record(struct regionmap_reader *r, uint64_t *ret_off, uint64_t *ret_len)
{
	uint64_t off, len;
	int e = fill(r, RM_RECORD);

	if (e < 0)
		return e;
	off = rm_get64(r->buf + r->pos);
	if (off == UINT64_MAX) { /* trailer magic starts with 0xff x 8 */
		e = read_trailer(r);
		if (e < 0)
			return e;
		r->done = true;
		r->info.count = r->chk.count;
		r->info.total = r->chk.total;
		return 0;
	}
	len = rm_get64(r->buf + r->pos + 8);
	e = check_record(r, off, len);
	if (e < 0)
		return e;
	r->pos += RM_RECORD;
	*ret_off = off;
	*ret_len = len;
	return 1;
}

/* A sealed memfd verified at open cannot change: hand out its records without checking again. */
static int next_verified(struct regionmap_reader *r, uint64_t *ret_off, uint64_t *ret_len)
{
	int e;

	if (r->index == r->hdr_count) {
		r->done = true;
		return 0;
	}
	e = fill(r, RM_RECORD);
	if (e < 0)
		return e;
	*ret_off = rm_get64(r->buf + r->pos);
	*ret_len = rm_get64(r->buf + r->pos + 8);
	r->pos += RM_RECORD;
	r->index++;
	return 1;
}

int regionmap_reader_next(struct regionmap_reader *r, uint64_t *ret_offset, uint64_t *ret_length)
{
	uint64_t off, len;
	int e;

	if (!r || !ret_offset || !ret_length)
		return -EINVAL;
	if (r->err)
		return r->err;
	if (r->done)
		return 0;
	e = r->verified ? next_verified(r, &off, &len) : next_record(r, &off, &len);
	if (e < 0) {
		r->err = e;
		return e;
	}
	if (e > 0) {
		*ret_offset = off;
		*ret_length = len;
	}
	return e;
}

/* Start (again) at the first byte: parse the header and leave pos at the first record. */
static int rewind_parse(struct regionmap_reader *r)
{
	r->foff = 0;
	r->pos = r->end = r->crc_pos = 0;
	r->crc = ~0u;
	r->crc_on = !r->verified;
	r->done = false;
	return read_header(r);
}

/* Checked before reading a byte: only sealed contents cannot change under our feet. */
static int memfd_seals(int fd)
{
	int seals = fcntl(fd, F_GET_SEALS);

	if (seals < 0)
		return errno == EINVAL ? -EPERM : -errno; /* not a memfd or not sealable */
	return (seals & NEED_SEALS) == NEED_SEALS ? 0 : -EPERM;
}

static int memfd_sizes(struct regionmap_reader *r)
{
	uint64_t n = r->hdr_count, room;
	struct stat st;

	if (fstat(r->fd, &st) < 0)
		return -errno;
	if ((uint64_t)st.st_size < r->hdr_len + RM_TRAILER)
		return -ENODATA;
	room = ((uint64_t)st.st_size - r->hdr_len - RM_TRAILER) / RM_RECORD;
	/* Compare before multiplying: n is hostile. */
	if (n > room || (n > 0 && n - 1 > r->info.export_size / r->info.granularity))
		return -EFBIG;
	if ((uint64_t)st.st_size != r->hdr_len + n * RM_RECORD + RM_TRAILER)
		return -EBADMSG;
	return 0;
}

static int verify_memfd(struct regionmap_reader *r)
{
	uint64_t off, len;
	int e = memfd_sizes(r);

	if (e < 0)
		return e;
	while ((e = next_record(r, &off, &len)) > 0)
		;
	if (e < 0)
		return e;
	r->verified = true; /* sealed: the bytes cannot change any more */
	return rewind_parse(r); /* verified: start over at the first record for the caller */
}

static int open_checked(struct regionmap_reader *r)
{
	int e = r->mode == REGIONMAP_READ_MEMFD ? memfd_seals(r->fd) : 0;

	if (e < 0)
		return e;
	e = rewind_parse(r);
	if (e < 0)
		return e;
	if (r->mode == REGIONMAP_READ_STREAM)
		return 0;
	return verify_memfd(r);
}

int regionmap_reader_open(int fd, unsigned mode, struct regionmap_reader **ret)
{
	struct regionmap_reader *r;
	int e;

	if (fd < 0 || !ret || mode > REGIONMAP_READ_MEMFD)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->fd = fd;
	r->mode = mode;
	e = open_checked(r);
	if (e < 0) {
		free(r);
		return e;
	}
	*ret = r;
	return 0;
}

const struct regionmap_info *regionmap_reader_info(const struct regionmap_reader *r)
{
	return r ? &r->info : NULL;
}

int regionmap_reader_get(struct regionmap_reader *r, uint64_t index, uint64_t *ret_offset,
                         uint64_t *ret_length)
{
	uint8_t rec[RM_RECORD];
	ssize_t n;

	if (!r || !ret_offset || !ret_length)
		return -EINVAL;
	if (r->mode != REGIONMAP_READ_MEMFD)
		return -EOPNOTSUPP;
	if (index >= r->hdr_count)
		return -ERANGE;
	do
		n = pread(r->fd, rec, sizeof(rec), (off_t)(r->hdr_len + index * RM_RECORD));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(rec))
		return -ENODATA;
	*ret_offset = rm_get64(rec);
	*ret_length = rm_get64(rec + 8);
	return 0;
}

void regionmap_reader_free(struct regionmap_reader *r)
{
	free(r);
}
