/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The state journal: strict parsing (exact errno), atomic write/read round trip, refusal of a
 * symlinked or group/world-accessible state directory, identifier and label checks. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "claims.h"
#include "devices.h"
#include "runs.h"
#include "state.h"
#include "unit.h"

#define ID "nbdattach:t:n:0123456789abcdef0123456789abcdef"
#define GOOD "index=3\nidentifier=" ID "\nsize=1048576\nblock-size=4096\n"

static int parse(const char *s)
{
	struct state_rec r;

	return state_parse(s, strlen(s), &r);
}

/* Field by field (a memcmp would compare padding and the bytes after each string's NUL). */
static bool same_rec(const struct state_rec *a, const struct state_rec *b)
{
	return a->index == b->index && !strcmp(a->identifier, b->identifier) && !strcmp(a->tag, b->tag) &&
	       !strcmp(a->name, b->name) && !strcmp(a->uri, b->uri) && !strcmp(a->export_name, b->export_name) &&
	       !strcmp(a->bitmap, b->bitmap) && a->size == b->size && a->block_size == b->block_size &&
	       a->connections == b->connections && a->read_only == b->read_only && !strcmp(a->owner, b->owner) &&
	       a->pid == b->pid && a->time == b->time && a->start == b->start && a->saved_queue == b->saved_queue &&
	       a->saved_read_ahead_kb == b->saved_read_ahead_kb && a->saved_max_sectors_kb == b->saved_max_sectors_kb &&
	       a->saved_nomerges == b->saved_nomerges && a->server.known == b->server.known &&
	       a->server.dev == b->server.dev && a->server.ino == b->server.ino && a->server.uid == b->server.uid &&
	       a->server.btime == b->server.btime;
}

static void test_parse(void)
{
	struct state_rec g;

	expect_int("minimal record parses", 0, state_parse(GOOD, strlen(GOOD), &g));
	unit_check(g.index == 3 && !strcmp(g.identifier, ID) && g.size == 1048576 && g.block_size == 4096 &&
		   !g.tag[0] && !g.uri[0] && g.pid == 0 && !g.read_only && !g.saved_queue,
		   "minimal record: its fields, the rest empty", "index %" PRIu32 " size %" PRIu64, g.index, g.size);
	expect_int("a newer version's key is skipped", 0, parse(GOOD "colour=red\n"));
	expect_int("... also with an empty value", 0, parse(GOOD "colour=\n"));
	expect_int("a malformed key refused (upper case)", -EBADMSG, parse(GOOD "Colour=red\n"));
	expect_int("a malformed key refused (space)", -EBADMSG, parse(GOOD "col our=red\n"));
	expect_int("an empty key refused", -EBADMSG, parse(GOOD "=red\n"));
	expect_int("an unknown key's control character refused", -EBADMSG, parse(GOOD "colour=r\x01d\n"));
	expect_int("a line without '=' refused", -EBADMSG, parse(GOOD "colour\n"));
	expect_int("duplicate key refused", -EBADMSG, parse(GOOD "index=4\n"));
	expect_int("missing final newline refused", -EBADMSG, parse("index=3"));
	expect_int("missing identifier refused", -EBADMSG, parse("index=3\nsize=1\nblock-size=512\n"));
	expect_int("foreign identifier refused", -EBADMSG,
		   parse("index=3\nidentifier=other:x\nsize=1\nblock-size=512\n"));
	expect_int("leading zero refused", -EBADMSG, parse(GOOD "pid=01\n"));
	expect_int("index out of range refused", -EBADMSG,
		   parse("index=99999999\nidentifier=" ID "\nsize=1\nblock-size=512\n"));
	expect_int("bad tag refused", -EBADMSG, parse(GOOD "tag=../x\n"));
	expect_int("control character refused", -EBADMSG, parse(GOOD "uri=a\tb\n"));
	expect_int("empty input refused", -EBADMSG, state_parse("", 0, &(struct state_rec){0}));
	expect_int("saved queue settings parse", 0, parse(GOOD "saved-read-ahead-kb=128\nsaved-max-sectors-kb=1280\n"));
	expect_int("half a saved queue pair refused", -EBADMSG, parse(GOOD "saved-read-ahead-kb=128\n"));
	expect_int("saved setting over 32 bits refused", -EBADMSG,
		   parse(GOOD "saved-read-ahead-kb=4294967296\nsaved-max-sectors-kb=1\n"));
	expect_int("owner attaching parses", 0, parse(GOOD "owner=attaching\n"));
	expect_int("server's socket parses", 0, state_parse(GOOD "socket-dev=64768\nsocket-ino=12\nserver-uid=107\n",
								strlen(GOOD) + 46, &g));
	unit_check(g.server.known && g.server.dev == 64768 && g.server.ino == 12 && g.server.uid == 107,
		   "server's socket: its fields", "known %d dev %" PRIu64 " ino %" PRIu64 " uid %" PRIu32,
		   g.server.known, g.server.dev, g.server.ino, g.server.uid);
	expect_int("server's socket without its uid refused", -EBADMSG, parse(GOOD "socket-dev=1\nsocket-ino=12\n"));
	expect_int("a birth time without the socket refused", -EBADMSG, parse(GOOD "socket-btime=5\n"));
	expect_int("server uid over 32 bits refused", -EBADMSG,
		   parse(GOOD "socket-dev=1\nsocket-ino=1\nserver-uid=4294967296\n"));
	expect_int("unknown owner refused", -EBADMSG, parse(GOOD "owner=root\n"));
}

/* What the parser would refuse is never written: a newline in an export name (a server's or a
 * URI's, percent-decoded) must not become a key of its own. */
static void test_format(void)
{
	struct state_rec w = { .index = 1, .size = 512, .block_size = 512 }, r;
	char buf[STATE_FILE_MAX + 1];
	size_t len;

	snprintf(w.identifier, sizeof(w.identifier), "%s", ID);
	snprintf(w.owner, sizeof(w.owner), "attaching");
	expect_int("formats", 0, state_format(&w, buf, sizeof(buf), &len));
	expect_int("and parses back", 0, state_parse(buf, len, &r));
	unit_check(!strcmp(r.owner, "attaching"), "owner round trip", "got '%s'", r.owner);
	snprintf(w.export_name, sizeof(w.export_name), "a\nowner=run");
	expect_int("newline in a field refused", -EINVAL, state_format(&w, buf, sizeof(buf), &len));
	snprintf(w.export_name, sizeof(w.export_name), "e");
	snprintf(w.uri, sizeof(w.uri), "nbd://h/\x7f");
	expect_int("DEL in a field refused", -EINVAL, state_format(&w, buf, sizeof(buf), &len));
}

/* The ownership lock is exclusive between open file descriptions, even of one process. */
static void test_lock(void)
{
	char dir[] = "/tmp/nbdattach-unit.XXXXXX";
	int a = -1, b;

	if (!mkdtemp(dir)) {
		unit_check(false, "scratch directory created", "mkdtemp %s: %s", dir, strerror(errno));
		return;
	}
	setenv("NBDATTACH_STATE_DIR", dir, 1);
	expect_int("lock", 0, state_lock(&a));
	b = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	expect_int("a second holder is refused while held", -1, flock(b, LOCK_EX | LOCK_NB));
	state_unlock(&a);
	unit_check(a == -1, "unlock resets the fd", "fd %d", a);
	expect_int("free again after unlock", 0, flock(b, LOCK_EX | LOCK_NB));
	close(b);
	rmdir(dir);
}

static void test_labels(void)
{
	char tag[65], name[65];

	unit_check(dev_label_valid("vm-100.disk_0"), "label with . _ - valid", "refused");
	unit_check(!dev_label_valid("-x") && !dev_label_valid("") && !dev_label_valid("a/b"),
		   "bad labels refused", "accepted");
	expect_int("identifier parses", 0, dev_identifier_parse(ID, tag, name));
	expect_int("short cookie refused", -EINVAL, dev_identifier_parse("nbdattach:t:n:0123", tag, name));
}

/* released/nbdN, in the state directory the caller set up. */
static void test_release_records(void)
{
	struct claim c;
	uint32_t *v = NULL;
	size_t n = 0;

	expect_int("no release record: ENOENT", -ENOENT, release_record_read(7, &c));
	expect_int("release record of a foreign identifier refused", -EINVAL, release_record_write(7, "x:y"));
	expect_int("release record written", 0, release_record_write(7, ID));
	expect_int("release record read back", 0, release_record_read(7, &c));
	unit_check(!strcmp(c.identifier, ID) && !strcmp(c.tag, "t") && !strcmp(c.name, "n"),
		   "release record carries identifier, tag and name", "got '%s' '%s' '%s'", c.identifier, c.tag, c.name);
	expect_int("release records listed", 0, release_record_list(&v, &n));
	unit_check(n == 1 && v[0] == 7, "the one release record is listed", "%zu records", n);
	free(v);
	expect_int("remove_if of another identifier keeps it", 0,
		   release_record_remove_if(7, "nbdattach:t:n:ffffffffffffffffffffffffffffffff"));
	expect_int("still there", 0, release_record_read(7, &c));
	expect_int("remove_if of its identifier removes it", 0, release_record_remove_if(7, ID));
	expect_int("release record gone", -ENOENT, release_record_read(7, &c));
}

static void test_roundtrip(void)
{
	char dir[] = "/tmp/nbdattach-unit.XXXXXX", link[64], sub[64];
	struct state_rec w = { .index = 7, .size = 1 << 20, .block_size = 4096, .connections = 2, .read_only = true,
			       .pid = 4242, .time = 987654321, .start = 123456789012 }, r;

	if (!mkdtemp(dir)) {
		unit_check(false, "scratch directory created", "mkdtemp %s: %s", dir, strerror(errno));
		return;
	}
	snprintf(w.identifier, sizeof(w.identifier), "%s", ID);
	snprintf(w.uri, sizeof(w.uri), "nbd+unix:///d?socket=/x");
	snprintf(w.tag, sizeof(w.tag), "tag-a");
	snprintf(w.name, sizeof(w.name), "name-b");
	snprintf(w.export_name, sizeof(w.export_name), "d");
	snprintf(w.bitmap, sizeof(w.bitmap), "bitmap-c");
	snprintf(w.owner, sizeof(w.owner), "run");
	setenv("NBDATTACH_STATE_DIR", dir, 1);
	expect_int("read without a journal: ENOENT", -ENOENT, state_read(7, &r));
	expect_int("write", 0, state_write(&w));
	expect_int("read back", 0, state_read(7, &r));
	unit_check(same_rec(&r, &w), "round trip equal, field by field", "differs");
	w.saved_queue = true, w.saved_read_ahead_kb = 0, w.saved_max_sectors_kb = 1280, w.saved_nomerges = 1;
	expect_int("write with saved queue settings", 0, state_write(&w));
	expect_int("read back", 0, state_read(7, &r));
	unit_check(same_rec(&r, &w) && r.saved_queue && r.saved_max_sectors_kb == 1280,
		   "saved queue settings round trip", "differ");
	w.saved_queue = false, w.saved_max_sectors_kb = 0, w.saved_nomerges = 0;
	w.server = (struct server_pin){ .known = true, .dev = UINT64_MAX, .ino = 1ull << 40, .uid = 65534,
					.btime = 1700000000123456789ull };
	expect_int("write with the server's socket", 0, state_write(&w));
	expect_int("read back", 0, state_read(7, &r));
	unit_check(same_rec(&r, &w) && r.server.known && r.server.dev == UINT64_MAX, "server's socket round trips",
		   "differs");
	expect_int("remove", 0, state_remove(7));
	expect_int("gone", -ENOENT, state_read(7, &r));
	test_release_records();
	chmod(dir, 0755);
	expect_int("group/world-readable dir refused", -EPERM, state_write(&w));
	snprintf(link, sizeof(link), "%s.lnk", dir);
	unit_check(symlink(dir, link) == 0, "symlink created", "%s", strerror(errno));
	setenv("NBDATTACH_STATE_DIR", link, 1);
	expect_int("symlinked state dir refused", -ENOTDIR, state_write(&w));
	unlink(link);
	snprintf(sub, sizeof(sub), "%s/devices", dir);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/released", dir);
	rmdir(sub);
	rmdir(dir);
}

static int cparse(const char *s)
{
	struct claim c;

	return claim_parse(s, strlen(s), &c);
}

static void test_claims(void)
{
	expect_int("claim parses", 0, cparse("NBDATTACH_ID=" ID "\nNBDATTACH_TAG=t\nNBDATTACH_NAME=n\n"));
	expect_int("claim without identifier refused", -EBADMSG, cparse("NBDATTACH_TAG=t\n"));
	expect_int("foreign identifier refused", -EBADMSG, cparse("NBDATTACH_ID=x:y\n"));
	expect_int("path in a name refused", -EBADMSG, cparse("NBDATTACH_ID=" ID "\nNBDATTACH_NAME=../../etc\n"));
	expect_int("unknown key refused", -EBADMSG, cparse("NBDATTACH_ID=" ID "\nRUN=x\n"));
	expect_int("missing newline refused", -EBADMSG, cparse("NBDATTACH_ID=" ID));
}

#define RUN "pid=1234\nstart=98765\nstep=wait\nchild=1240:98770\n"

static int run_parse_str(const char *s, struct run_rec *r)
{
	return run_parse(s, strlen(s), r);
}

/* A run record: cleanup removes one it cannot read, and the run's processes would then outlive
 * it, so a newer version's key is skipped as in a device entry; anything else odd is refused. */
static void test_run_records(void)
{
	struct run_rec r;

	expect_int("run record parses", 0, run_parse_str(RUN, &r));
	unit_check(r.pid == 1234 && r.start == 98765 && !strcmp(r.step, "wait") && r.n_children == 1 &&
		   r.children[0].pid == 1240 && r.children[0].start == 98770,
		   "run record: its fields", "pid %" PRId64 " children %u", r.pid, r.n_children);
	memset(&r, 0, sizeof(r));
	expect_int("run record: a newer version's key is skipped", 0, run_parse_str(RUN "colour=red\n", &r));
	unit_check(r.pid == 1234 && r.n_children == 1, "run record: skipping it keeps the rest", "pid %" PRId64, r.pid);
	expect_int("run record: a malformed key refused", -EBADMSG, run_parse_str(RUN "Colour=red\n", &r));
	expect_int("run record: an unknown key's control character refused", -EBADMSG,
		   run_parse_str(RUN "colour=r\x01d\n", &r));
	expect_int("run record: a second pid refused", -EBADMSG, run_parse_str(RUN "pid=1\n", &r));
	expect_int("run record: a second step refused", -EBADMSG, run_parse_str(RUN "step=end\n", &r));
	expect_int("run record: no start refused", -EBADMSG, run_parse_str("pid=1\nstep=wait\n", &r));
}

int main(void)
{
	test_claims();
	test_run_records();
	test_parse();
	test_format();
	test_lock();
	test_labels();
	test_roundtrip();
	return unit_exit();
}
