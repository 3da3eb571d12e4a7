/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libregionmap — write and read dirty-region maps (see regionmap(5), libregionmap(3)).
 *
 * A region map describes which byte ranges of a block export must be backed up: sorted,
 * merged, non-overlapping {offset, length} records between a fixed header and a trailer that
 * carries the record count, the total and a checksum. A map without a valid trailer is an
 * error, never a shorter map.
 *
 * Every function that can fail returns 0 (or a positive value where documented) on success and
 * a negative errno on failure; output parameters are untouched on failure. The library never
 * prints, never exits, and opens every descriptor with O_CLOEXEC.
 */
#ifndef REGIONMAP_H
#define REGIONMAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(REGIONMAP_BUILDING_SHARED)
#define REGIONMAP_API __attribute__((visibility("default")))
#else
#define REGIONMAP_API
#endif

#define REGIONMAP_VERSION 1u

/* Header flags. */
#define REGIONMAP_FLAG_FULL 0x1u /* no bitmap: one region covers the whole export */

/* Longest meta-context name a map may carry (NBD caps strings at 4096; we need far less). */
#define REGIONMAP_CONTEXT_MAX 1024u

/* Largest granularity accepted (1 GiB); granularity is a power of two >= 1. */
#define REGIONMAP_GRANULARITY_MAX (UINT64_C(1) << 30)

/* Record count meaning "not known yet" (stream form); the trailer then carries it. */
#define REGIONMAP_COUNT_UNKNOWN UINT64_MAX

struct regionmap_info {
	uint32_t version;
	uint32_t flags;       /* REGIONMAP_FLAG_* */
	uint64_t export_size; /* bytes, > 0 */
	uint64_t granularity; /* bytes, power of two */
	uint64_t count;       /* records: from the reader in stream mode REGIONMAP_COUNT_UNKNOWN
	                         until the trailer was verified, in memfd mode known at open */
	uint64_t total;       /* dirty bytes: valid from the writer after finish, from the
	                         reader after the trailer was verified (or at open for memfds) */
	char context[REGIONMAP_CONTEXT_MAX + 1]; /* NUL-terminated meta-context name, may be "" */
};

/* ---- writing ---- */

struct regionmap_writer;

/* Writer modes. */
#define REGIONMAP_WRITE_STREAM 0x0u /* sequential write(2) (pipe, socket, file): constant memory */
#define REGIONMAP_WRITE_MEMFD  0x1u /* fd is a memfd (or regular file) written with pwrite(2) from
                                       offset 0; finish patches the count into the header and,
                                       when the fd can still be sealed (F_GET_SEALS works and
                                       F_SEAL_SEAL is not set), applies F_SEAL_SHRINK|GROW|WRITE|
                                       SEAL; see regionmap_writer_finish() */

/*
 * Start a map on fd (not closed by the library). info->export_size, granularity, flags and
 * context are used; the other fields are ignored. Fails with -EINVAL on fd < 0, a NULL info or
 * ret, an unknown mode, a zero size, a granularity that is not a power of two or is above
 * REGIONMAP_GRANULARITY_MAX, unknown flags, or a context longer than REGIONMAP_CONTEXT_MAX or
 * with characters outside printable ASCII; -ENOMEM.
 */
REGIONMAP_API int regionmap_writer_new(int fd, const struct regionmap_info *info, unsigned mode,
                                       struct regionmap_writer **ret);

/*
 * Add one dirty extent. Extents must come in ascending order without overlap; adjacent extents
 * are merged. Offsets and lengths must be multiples of the granularity, except that the last
 * extent may end at export_size. -EINVAL on zero length, misalignment or overflow, or after a
 * successful regionmap_writer_finish(); -ERANGE past the export end; -EDOM when out of order or
 * overlapping; an I/O errno from write(2) (stream mode) or pwrite(2) (memfd mode), which only
 * come when the 64 KiB buffer is flushed. A writer that failed stays failed: every later call
 * (add or finish) returns the same error.
 */
REGIONMAP_API int regionmap_writer_add(struct regionmap_writer *w, uint64_t offset, uint64_t length);

/*
 * Write the trailer; in MEMFD mode also patch the count into the header, truncate the file to
 * the map and, only when F_GET_SEALS works on fd and F_SEAL_SEAL is not yet set, add the four
 * seals. A file that cannot be sealed (a regular file on disk, a tmpfs file, a memfd created
 * without MFD_ALLOW_SEALING: those carry F_SEAL_SEAL from creation) is left complete but
 * unsealed, 0 is still returned, and a REGIONMAP_READ_MEMFD reader refuses it with -EPERM;
 * check F_GET_SEALS yourself when you need the seals. -EDOM a FULL map that is not exactly one
 * region {0, export_size}; -EINVAL when already finished; write(2), pwrite(2), ftruncate(2) and
 * fcntl(2) errors. Writes nothing more after.
 */
REGIONMAP_API int regionmap_writer_finish(struct regionmap_writer *w);

/* Number of records and dirty bytes so far (merged). */
REGIONMAP_API uint64_t regionmap_writer_count(const struct regionmap_writer *w);
REGIONMAP_API uint64_t regionmap_writer_total(const struct regionmap_writer *w);

/* Free the writer; the fd stays open. An unfinished map is simply left without a trailer. */
REGIONMAP_API void regionmap_writer_free(struct regionmap_writer *w);

/* memfd_create(name, MFD_CLOEXEC|MFD_ALLOW_SEALING[|MFD_NOEXEC_SEAL where supported]). */
REGIONMAP_API int regionmap_memfd_create(const char *name, int *ret_fd);

/* ---- reading ---- */

struct regionmap_reader;

#define REGIONMAP_READ_STREAM  0x0u /* read sequentially with read(2) (pipe, socket) */
#define REGIONMAP_READ_MEMFD   0x1u /* pread; requires all four seals and an fstat size that
                                       matches the header's count; verifies the whole map,
                                       trailer and checksum at open */

/*
 * Open a map. Errors: -EBADMSG bad magic or trailer magic or checksum, or (memfd) a file size
 * that does not match the count; -EPROTONOSUPPORT unknown version; -EINVAL fd < 0, NULL ret,
 * an unknown mode, or a bad header field (size 0, granularity, flags, context length or
 * characters, reserved or padding bytes); -EPERM (memfd mode) missing seals or not a sealable
 * file; -EFBIG (memfd) an absurd count (more records than the export can hold at its
 * granularity, or than the file can hold); -ENODATA the input ends inside the header, or (memfd)
 * the file is shorter than its header plus a trailer; -ENOMEM; other read(2)/pread(2)/fstat(2)/
 * fcntl(2) errors as they come (-EBADF for a descriptor that is not open). In memfd mode every error of regionmap_reader_next() can also come from open.
 */
REGIONMAP_API int regionmap_reader_open(int fd, unsigned mode, struct regionmap_reader **ret);

REGIONMAP_API const struct regionmap_info *regionmap_reader_info(const struct regionmap_reader *r);

/*
 * Next region: returns 1 and fills *ret_offset and *ret_length, 0 at the verified end of the map
 * (trailer present, count, total and checksum match; info count and total are then set), or a
 * negative errno: -ENODATA stream ended before the trailer; -EBADMSG bad trailer or checksum, or
 * data after it; -EDOM unsorted or overlapping or unmerged, or a FULL map that is not exactly
 * one region {0, export_size} (also one with no record at all); -ERANGE past the export end;
 * -EOVERFLOW offset+length overflows; -EINVAL zero length or misaligned (or a NULL argument);
 * read(2) errors (pread(2) in memfd mode) as they come.
 * After an error every later call returns the same error.
 */
REGIONMAP_API int regionmap_reader_next(struct regionmap_reader *r, uint64_t *ret_offset,
                                        uint64_t *ret_length);

/* Memfd mode only: record number index (0-based). -ERANGE past count, -EOPNOTSUPP on a stream. */
REGIONMAP_API int regionmap_reader_get(struct regionmap_reader *r, uint64_t index,
                                       uint64_t *ret_offset, uint64_t *ret_length);

REGIONMAP_API void regionmap_reader_free(struct regionmap_reader *r);

/* Human-readable name of a library errno in the map context ("map truncated before trailer"). */
REGIONMAP_API const char *regionmap_strerror(int negative_errno);

#ifdef __cplusplus
}
#endif
#endif
