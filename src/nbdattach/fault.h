/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Fault injection for the crash-safety tests: with NBDATTACH_FAULT=STEP in the environment,
 * the helper SIGKILLs itself when it reaches journal step STEP (after recording it, before
 * doing it), or SIGSTOPs itself with NBDATTACH_FAULT_SIGNAL=STOP. Steps are listed in
 * nbdattach(8). */
#ifndef NBDATTACH_FAULT_H
#define NBDATTACH_FAULT_H

/* STEP, or STEP:NAME when NAME is not NULL. */
void fault_point(const char *step, const char *name);

#endif
