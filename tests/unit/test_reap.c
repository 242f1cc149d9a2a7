// SPDX-License-Identifier: MIT
/*
 * test_reap.c - the reaper that closes replaced and expired files off the
 * paths that made them: a background producer (store_close_paced, the
 * sweeper's expiries) never takes more than half its slots, so commits
 * (store_close_later) find room while the reaper waits on a slow close,
 * and every descriptor handed over is closed in the end; a slow close
 * holds up none of the others.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "stashfs/store.h"
#include "reap.h"

#define FLOOD 400       /* more than the reaper's slots */

/*
 * A descriptor whose close blocks for about a second: a TCP connection
 * with SO_LINGER whose peer reads nothing, its send buffer full.  The
 * listener (*@peer) must stay open meanwhile.
 */
static int slow_close_fd(int *lst, int *peer)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct linger lg = { .l_onoff = 1, .l_linger = 1 };
	char buf[65536] = { 0 };
	int c;

	*lst = socket(AF_INET, SOCK_STREAM, 0);
	if (*lst < 0 || bind(*lst, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(*lst, 1) < 0 ||
	    getsockname(*lst, (struct sockaddr *)&a, &len) < 0)
		return -1;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0)
		return -1;
	*peer = accept(*lst, NULL, NULL);
	fcntl(c, F_SETFL, O_NONBLOCK);
	while (write(c, buf, sizeof(buf)) > 0)
		;
	fcntl(c, F_SETFL, 0);
	setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	return c;
}

static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

struct flood {
	struct stash_store *st;
	int fds[FLOOD];
};

static void *flood_main(void *arg)
{
	struct flood *f = arg;

	for (int i = 0; i < FLOOD; i++)
		store_close_paced(f->st, f->fds[i]);
	return NULL;
}

/* A store whose reaper is in a close that takes a second. */
struct busy {
	char backing[32];
	struct stash_store *st;
	int lst, peer;
};

static bool busy_start(struct busy *b)
{
	struct stash_error err;
	int slow;

	snprintf(b->backing, sizeof(b->backing), "/tmp/stashfs-reap-XXXXXX");
	b->st = NULL;
	b->lst = b->peer = -1;
	CHECK(mkdtemp(b->backing) != NULL);
	CHECK(stash_store_open(b->backing, NULL, &b->st, &err) == 0);
	if (!b->st)
		return false;
	slow = slow_close_fd(&b->lst, &b->peer);
	CHECK(slow >= 0);
	CHECK(store_close_later(b->st, slow));
	usleep(100 * 1000);                     /* a reaper is in that close now */
	return true;
}

static void busy_stop(struct busy *b)
{
	char cmd[300];

	stash_store_close(b->st);               /* closes whatever is still queued */
	close(b->peer);
	close(b->lst);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->backing);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", b->backing);
}

static void test_background_leaves_room(void)
{
	static struct flood f;
	struct busy b;
	int before, later = 0, queued = 0;
	pthread_t t;

	before = open_fds();
	if (!busy_start(&b))
		return;
	f.st = b.st;
	for (int i = 0; i < FLOOD; i++)
		f.fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	CHECK(pthread_create(&t, NULL, flood_main, &f) == 0);
	usleep(200 * 1000);                     /* the flood stops at half */
	for (int i = 0; i < 64; i++) {
		int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

		later++;
		queued += store_close_later(b.st, fd);
	}
	CHECK(queued == later);                 /* every commit found room */
	CHECK(pthread_join(t, NULL) == 0);
	busy_stop(&b);
	CHECK(open_fds() == before);            /* every one handed over was closed */
}

/*
 * One close waiting on its device holds up none of the others: on a disk
 * mounted with discard each last close of a removed file waits for the
 * device (and then for a CPU), and the start-up scan waits for the reaper.
 */
static void test_slow_close_holds_up_no_other(void)
{
	struct pollfd pfd = { .events = POLLIN };
	struct busy b;
	int p[2];

	if (!busy_start(&b))
		return;
	CHECK(pipe(p) == 0);
	pfd.fd = p[0];
	CHECK(store_close_later(b.st, p[1]));
	/* Closed while the slow one still waits (a single reaper closed it after). */
	CHECK(poll(&pfd, 1, 600) == 1 && (pfd.revents & POLLHUP));
	busy_stop(&b);
	close(p[0]);
}

int main(void)
{
	test_background_leaves_room();
	test_slow_close_holds_up_no_other();
	return check_done();
}
