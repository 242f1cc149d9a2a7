/* SPDX-License-Identifier: MIT */
/*
 * sha256.h - SHA-256 (FIPS 180-4), for content hashes in metadata and audit
 * records.  Small and dependency-free; not constant-time (nothing secret is
 * hashed here).
 */
#ifndef STASHFS_SHA256_H
#define STASHFS_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct stash_sha256 {
	uint32_t h[8];
	uint64_t len;           /* bytes hashed so far */
	unsigned char buf[64];
	size_t fill;
};

void stash_sha256_init(struct stash_sha256 *c);
void stash_sha256_update(struct stash_sha256 *c, const void *data, size_t len);
/* Finish and write the digest as 64 lowercase hex digits plus NUL into @hex. */
void stash_sha256_hex(struct stash_sha256 *c, char hex[65]);

/* Hash the whole content of @fd (read with pread from 0); 0 or -errno. */
int stash_sha256_fd(int fd, char hex[65]);

#endif
