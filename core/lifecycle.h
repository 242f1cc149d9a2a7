/* SPDX-License-Identifier: MIT */
/*
 * lifecycle.h - persistence, ttl, expiry and the sweeper (lifecycle.c).
 * Not a public header.
 */
#ifndef STASHFS_LIFECYCLE_H
#define STASHFS_LIFECYCLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <jansson.h>

#include "stashfs/error.h"
#include "stashfs/store.h"

struct commit_hook;

int life_init(struct stash_store *st);
void life_destroy(struct stash_store *st);
/* Deadlines queued and paths kept as ephemeral (each path once: for tests). */
void life_counts(struct stash_store *st, size_t *deadlines, size_t *ephemeral);
/* May any object have a ttl or be ephemeral?  (False only after a clean scan.) */
bool life_any(struct stash_store *st);
/* When the object at @fd expires (epoch milliseconds), 0 = never. */
int64_t life_deadline(int fd, const struct stat *sb);
/* 0 if the object at @fd is live, -ENOENT if expired or an orphaned ephemeral. */
int life_check(struct stash_store *st, int fd, const struct stat *sb, time_t *expires);
/* After a commit or metadata change: queue its deadline, remember ephemerals. */
void life_note(struct stash_store *st, const char *path, int fd);
/* Check a user.* xattr write: -EINVAL bad value or unknown name, -EPERM read-only. */
int life_check_xattr(const char *name, const char *value, size_t size, struct stash_error *err);
/* Computed xattrs (sha256, expires): length, -errno, or 1 if @name is not one. */
int life_virtual_xattr(int fd, const struct stat *sb, const char *name, char *buf, size_t size);
/* Internal xattrs never shown to users. */
bool life_hidden_xattr(const char *name);

/* What lifecycle does at every commit (registered by the store). */
extern const struct commit_hook life_commit_hook;

#endif
