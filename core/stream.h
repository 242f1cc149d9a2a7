/* SPDX-License-Identifier: MIT */
/*
 * stream.h - streams, links and the audit journal (stream.c).
 * Not a public header.
 */
#ifndef STASHFS_STREAM_H
#define STASHFS_STREAM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

struct commit_hook;

struct stream_audit;

/* Can @stash be the target of a link (a stash path, no "..")? */
bool stream_path_ok(const char *stash);

/* Are streams linked to @stash?  (Stable while its name lock is held.) */
bool stream_linked(struct stash_store *st, const char *stash);

/* Add or remove "stash -> stream" in the link index (takes the stash's lock). */
int stream_index_update(struct stash_store *st, const char *stash, const char *stream, bool add);

/*
 * Before a change of @stash to @version commits (caller holds its name
 * lock): if streams are linked to it, journal their record and return it
 * in *@out (NULL when nothing is linked).  @data (borrowed) is the record's
 * data; NULL = derive it from @content_fd.  After the change is in place,
 * stream_audit_commit appends the records; if it failed, stream_audit_abort.
 */
int stream_audit_begin(struct stash_store *st, const char *stash, const char *op,
		       uint64_t version, json_t *data, int content_fd,
		       const struct stash_caller *who, struct stream_audit **out);
void stream_audit_commit(struct stash_store *st, struct stream_audit *a);
void stream_audit_abort(struct stash_store *st, struct stream_audit *a);

/* Replay journal @name in @dirfd of an instance that died (at start-up). */
void stream_recover_journal(struct stash_store *st, int dirfd, const char *name);

/* The stash a stream links to, into @buf (size PATH_MAX); 0 or -errno. */
int stream_read_link(struct stash_store *st, const char *stream, char *buf);

/* What streams do at every commit (registered by the store). */
extern const struct commit_hook stream_commit_hook;

#endif
