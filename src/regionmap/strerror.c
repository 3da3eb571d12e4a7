/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Short phrases for the errnos the library returns, in the context of a region map. */
#include <errno.h>
#include <string.h>

#include "regionmap.h"

const char *regionmap_strerror(int negative_errno)
{
	switch (-negative_errno) {
	case 0: return "success";
	case EBADMSG: return "corrupt map (bad magic, trailer or checksum)";
	case EPROTONOSUPPORT: return "unsupported map version";
	case EINVAL: return "invalid map field or argument";
	case EPERM: return "memfd map is not sealed";
	case EFBIG: return "record count too large for the map";
	case ENODATA: return "map truncated before trailer";
	case EPIPE: return "map stream closed early";
	case EDOM: return "regions unsorted, overlapping or unmerged";
	case ERANGE: return "region past the end of the export";
	case EOVERFLOW: return "region offset plus length overflows";
	case EOPNOTSUPP: return "operation needs a memfd map";
	case ENOMEM: return "out of memory";
	default: return strerror(-negative_errno);
	}
}
