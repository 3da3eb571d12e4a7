/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Region map writer: constant-memory stream (write) or memfd (pwrite, patch, seal). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x8U
#endif

struct regionmap_writer {
	int fd;
	unsigned mode;
	int err;                  /* sticky failure */
	bool finished;
	struct rm_check chk;      /* chk.end/count/total describe emitted + pending */
	bool have_pending;
	uint64_t pend_off, pend_len;
	uint32_t crc;             /* raw register over everything flushed */
	uint64_t pos;             /* file offset of buf[0] (memfd mode) */
	size_t used;
	uint8_t buf[RM_BUFSZ];
};

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t len, uint64_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write out the buffer; crc covers header and records only (flushed before the trailer). */
static int flush(struct regionmap_writer *w, bool crc)
{
	int r;

	if (crc)
		w->crc = rm_crc32c_update(w->crc, w->buf, w->used);
	if (w->mode == REGIONMAP_WRITE_MEMFD)
		r = pwrite_all(w->fd, w->buf, w->used, w->pos);
	else
		r = write_all(w->fd, w->buf, w->used);
	if (r < 0)
		return r;
	w->pos += w->used;
	w->used = 0;
	return 0;
}

static void put_header(struct regionmap_writer *w, const struct regionmap_info *info, size_t ctxlen)
{
	uint8_t *h = w->buf;
	size_t len = rm_hdr_len(ctxlen);

	memset(h, 0, len);
	memcpy(h, RM_MAGIC, RM_MAGIC_LEN);
	rm_put32(h + RM_OFF_VERSION, REGIONMAP_VERSION);
	rm_put32(h + RM_OFF_FLAGS, info->flags);
	rm_put64(h + RM_OFF_SIZE, info->export_size);
	rm_put64(h + RM_OFF_GRAN, info->granularity);
	/* The checksum always covers the stream form (count unknown); memfd patches it later. */
	rm_put64(h + RM_OFF_COUNT, REGIONMAP_COUNT_UNKNOWN);
	rm_put16(h + RM_OFF_CTXLEN, (uint16_t)ctxlen);
	memcpy(h + RM_HDR_FIXED, info->context, ctxlen);
	w->used = len;
}

static int info_ok(const struct regionmap_info *info, unsigned mode, size_t *ret_ctxlen)
{
	size_t ctxlen;

	if (!info || mode > REGIONMAP_WRITE_MEMFD || info->export_size == 0 ||
	    !rm_is_pow2(info->granularity) || info->granularity > REGIONMAP_GRANULARITY_MAX ||
	    (info->flags & ~RM_KNOWN_FLAGS))
		return -EINVAL;
	ctxlen = strnlen(info->context, REGIONMAP_CONTEXT_MAX + 1);
	if (ctxlen > REGIONMAP_CONTEXT_MAX || !rm_context_ok(info->context, ctxlen))
		return -EINVAL;
	*ret_ctxlen = ctxlen;
	return 0;
}

int regionmap_writer_new(int fd, const struct regionmap_info *info, unsigned mode,
                         struct regionmap_writer **ret)
{
	struct regionmap_writer *w;
	size_t ctxlen;
	int r;

	if (fd < 0 || !ret)
		return -EINVAL;
	r = info_ok(info, mode, &ctxlen);
	if (r < 0)
		return r;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->fd = fd;
	w->mode = mode;
	w->crc = ~0u;
	rm_check_init(&w->chk, info->export_size, info->granularity, info->flags);
	put_header(w, info, ctxlen);
	*ret = w;
	return 0;
}

static int emit(struct regionmap_writer *w, uint64_t offset, uint64_t length)
{
	int r;

	if (w->used + RM_RECORD > RM_BUFSZ) {
		r = flush(w, true);
		if (r < 0)
			return r;
	}
	rm_put64(w->buf + w->used, offset);
	rm_put64(w->buf + w->used + 8, length);
	w->used += RM_RECORD;
	return 0;
}

static int add_checked(struct regionmap_writer *w, uint64_t offset, uint64_t length)
{
	int r = rm_check_shape(&w->chk, offset, length);

	if (r == -EOVERFLOW)
		return -EINVAL; /* the writer's contract: overflow is an invalid argument */
	if (r < 0)
		return r;
	if (w->have_pending && offset < w->chk.end)
		return -EDOM;
	if (w->have_pending && offset == w->chk.end) {
		w->pend_len += length;
	} else {
		if (w->have_pending) {
			r = emit(w, w->pend_off, w->pend_len);
			if (r < 0)
				return r;
		}
		w->have_pending = true;
		w->pend_off = offset;
		w->pend_len = length;
		w->chk.count++;
	}
	w->chk.end = offset + length;
	w->chk.total += length;
	return 0;
}

int regionmap_writer_add(struct regionmap_writer *w, uint64_t offset, uint64_t length)
{
	int r;

	if (!w)
		return -EINVAL;
	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	r = add_checked(w, offset, length);
	if (r < 0)
		w->err = r; /* sticky, as documented: the map is no longer what the caller meant */
	return r;
}

static int put_trailer(struct regionmap_writer *w)
{
	uint8_t *t;
	int r;

	if (w->have_pending) {
		r = emit(w, w->pend_off, w->pend_len);
		if (r < 0)
			return r;
		w->have_pending = false;
	}
	r = flush(w, true);
	if (r < 0)
		return r;
	t = w->buf;
	memcpy(t, RM_TRAILER_MAGIC, RM_TRAILER_MAGIC_LEN);
	rm_put64(t + 16, w->chk.count);
	rm_put64(t + 24, w->chk.total);
	rm_put32(t + 32, ~w->crc);
	rm_put32(t + 36, 0);
	w->used = RM_TRAILER;
	return flush(w, false);
}

static int seal_memfd(struct regionmap_writer *w)
{
	uint8_t cnt[8];
	int r, seals;

	rm_put64(cnt, w->chk.count);
	r = pwrite_all(w->fd, cnt, sizeof(cnt), RM_OFF_COUNT);
	if (r < 0)
		return r;
	if (ftruncate(w->fd, (off_t)w->pos) < 0)
		return -errno;
	/* F_GET_SEALS fails on files that cannot be sealed at all, and works on every shmem file;
	 * a tmpfs file or a memfd made without MFD_ALLOW_SEALING carries F_SEAL_SEAL from birth
	 * (mm/shmem.c), so F_ADD_SEALS would fail with EPERM. Neither gets seals: the map is
	 * complete but unsealed, and a REGIONMAP_READ_MEMFD reader refuses it (-EPERM). */
	seals = fcntl(w->fd, F_GET_SEALS);
	if (seals < 0 || (seals & F_SEAL_SEAL))
		return 0;
	if (fcntl(w->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0)
		return -errno;
	return 0;
}

static int finish_checked(struct regionmap_writer *w)
{
	int r;

	/* A full map is exactly one region covering the export (regionmap(5)). */
	if ((w->chk.flags & REGIONMAP_FLAG_FULL) &&
	    (w->chk.count != 1 || w->pend_off != 0 || w->pend_len != w->chk.export_size))
		return -EDOM;
	r = put_trailer(w);
	if (r < 0 || w->mode != REGIONMAP_WRITE_MEMFD)
		return r;
	return seal_memfd(w);
}

int regionmap_writer_finish(struct regionmap_writer *w)
{
	int r;

	if (!w)
		return -EINVAL;
	if (w->err)
		return w->err;
	if (w->finished)
		return -EINVAL;
	r = finish_checked(w);
	if (r < 0)
		w->err = r;
	else
		w->finished = true;
	return r;
}

uint64_t regionmap_writer_count(const struct regionmap_writer *w)
{
	return w ? w->chk.count : 0;
}

uint64_t regionmap_writer_total(const struct regionmap_writer *w)
{
	return w ? w->chk.total : 0;
}

void regionmap_writer_free(struct regionmap_writer *w)
{
	free(w);
}

int regionmap_memfd_create(const char *name, int *ret_fd)
{
	unsigned base = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	int fd;

	if (!name || !ret_fd)
		return -EINVAL;
	fd = memfd_create(name, base | MFD_NOEXEC_SEAL);
	if (fd < 0 && errno == EINVAL) /* kernels before 6.3 */
		fd = memfd_create(name, base);
	if (fd < 0)
		return -errno;
	*ret_fd = fd;
	return 0;
}
