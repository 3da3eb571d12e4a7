/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Scope-bound cleanup helpers (gcc/clang cleanup attribute), in the style of systemd. */
#ifndef NBDATTACH_CLEANUP_H
#define NBDATTACH_CLEANUP_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void freep(void *p) { free(*(void **)p); }
static inline void closep(int *fd)
{
	if (*fd >= 0) {
		int saved = errno;
		close(*fd);
		errno = saved;
	}
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Define TYPE##_freep-style cleanup for a library type: DEFINE_CLEANUP(struct nl_sock *, nl_socket_free). */
#define DEFINE_CLEANUP(type, func)                  \
	static inline void func##p(type *p)         \
	{                                           \
		if (*p)                             \
			func(*p);                   \
	}

/* Hand ownership out of a cleanup-managed variable. */
#define TAKE_PTR(p)                                 \
	({                                          \
		__typeof__(p) _p_ = (p);            \
		(p) = NULL;                         \
		_p_;                                \
	})
#define TAKE_FD(fd)                                 \
	({                                          \
		int _fd_ = (fd);                    \
		(fd) = -1;                          \
		_fd_;                               \
	})

#endif
