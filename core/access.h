/* SPDX-License-Identifier: MIT */
/*
 * access.h - read permission on a named object, judged as the kernel's
 * default_permissions would judge an open (access.c).  Not a public header.
 */
#ifndef STASHFS_ACCESS_H
#define STASHFS_ACCESS_H

#include <stdbool.h>
#include <sys/stat.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

/*
 * May @who open @path (from the store's root) for reading: search
 * permission on every directory above it, read permission on it?  0 if so
 * (also when @who is NULL or root, or when @path does not exist yet: then
 * only the directories that exist are judged), -EACCES with the reason in
 * @err if not.
 */
int access_may_read(struct stash_store *st, const char *path, const struct stash_caller *who,
		    struct stash_error *err);

/*
 * Can everyone who can read a stream with owner, group and mode @stream
 * also read @path?  Judged per class of the stream's readers (its owner,
 * always; its group and others when their read bit is set), without
 * knowing anyone's supplementary groups, so false when in doubt.
 */
bool access_open_to(struct stash_store *st, const struct stat *stream, const char *path);

#endif
