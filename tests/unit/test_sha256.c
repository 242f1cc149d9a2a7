// SPDX-License-Identifier: MIT
/*
 * test_sha256.c - SHA-256 against known answers: the FIPS 180-4 examples
 * (NIST), messages whose length falls at every padding boundary, the same
 * message fed in pieces of every awkward size, and whole files by fd.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stashfs/sha256.h"
#include "check.h"

static void hash(const void *data, size_t len, char hex[65])
{
	struct stash_sha256 c;

	stash_sha256_init(&c);
	stash_sha256_update(&c, data, len);
	stash_sha256_hex(&c, hex);
}

/* Byte i of the patterned messages below: not all one value, so a block
 * processed twice or a byte out of place changes the digest. */
static unsigned char pattern(size_t i)
{
	return (unsigned char)(i * 7 + 3);
}

static void test_nist(void)
{
	static const struct { const char *msg; const char *digest; } cases[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		/* 448 bits: the padding no longer fits the block */
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		/* 896 bits */
		{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
		  "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	};
	char hex[65];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hash(cases[i].msg, strlen(cases[i].msg), hex);
		CHECK_MSG(!strcmp(hex, cases[i].digest), "sha256(\"%s\") = %s", cases[i].msg, hex);
	}
}

/* One million 'a', fed 1000 at a time, as NIST gives it. */
static void test_million_a(void)
{
	struct stash_sha256 c;
	char chunk[1000], hex[65];
	int i;

	memset(chunk, 'a', sizeof(chunk));
	stash_sha256_init(&c);
	for (i = 0; i < 1000; i++)
		stash_sha256_update(&c, chunk, sizeof(chunk));
	stash_sha256_hex(&c, hex);
	CHECK_MSG(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
		  "sha256(a x 1e6) = %s", hex);
}

/* Lengths around the 56-byte point where the length field stops fitting,
 * and around whole blocks. */
static void test_padding_boundaries(void)
{
	static const struct { size_t len; const char *digest; } cases[] = {
		{ 55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b" },
		{ 56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27" },
		{ 63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055" },
		{ 64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241" },
		{ 65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e" },
		{ 119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e" },
		{ 120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5" },
		{ 128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6" },
	};
	unsigned char msg[128];
	char hex[65];
	size_t i;

	for (i = 0; i < sizeof(msg); i++)
		msg[i] = pattern(i);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		hash(msg, cases[i].len, hex);
		CHECK_MSG(!strcmp(hex, cases[i].digest), "%zu bytes: %s", cases[i].len, hex);
	}
}

/* Feeding in pieces of any size gives the digest of the whole. */
static void test_pieces(void)
{
	static const size_t sizes[] = { 1, 3, 55, 56, 63, 64, 65, 127, 128, 1000, 4099 };
	const char *want = "ec0ebf98b6f2954bf0f7b839402b1ba245996c39d18e155414e91a2b4353c157";
	size_t len = 200000, i, off;
	unsigned char *msg = malloc(len);
	char hex[65];

	for (i = 0; i < len; i++)
		msg[i] = pattern(i);
	hash(msg, len, hex);
	CHECK_MSG(!strcmp(hex, want), "200000 bytes at once: %s", hex);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct stash_sha256 c;

		stash_sha256_init(&c);
		for (off = 0; off < len; off += sizes[i])
			stash_sha256_update(&c, msg + off, len - off < sizes[i] ? len - off : sizes[i]);
		stash_sha256_hex(&c, hex);
		CHECK_MSG(!strcmp(hex, want), "pieces of %zu: %s", sizes[i], hex);
	}
	free(msg);
}

/* A whole file by its fd: read from offset 0 whatever the file position,
 * across the function's read buffer; a bad fd is its errno. */
static void test_fd(void)
{
	char path[] = "/tmp/stashfs-test-sha256-XXXXXX", hex[65];
	size_t len = 200000, i;
	unsigned char *msg = malloc(len);
	int fd = mkstemp(path);

	CHECK(fd >= 0);
	if (fd < 0) {
		free(msg);
		return;
	}
	unlink(path);
	CHECK(stash_sha256_fd(fd, hex) == 0);
	CHECK_MSG(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
		  "empty file: %s", hex);
	for (i = 0; i < len; i++)
		msg[i] = pattern(i);
	CHECK(write(fd, msg, len) == (ssize_t)len);
	CHECK(stash_sha256_fd(fd, hex) == 0);
	CHECK_MSG(!strcmp(hex, "ec0ebf98b6f2954bf0f7b839402b1ba245996c39d18e155414e91a2b4353c157"),
		  "200000-byte file: %s", hex);
	close(fd);
	CHECK(stash_sha256_fd(fd, hex) == -EBADF);
	free(msg);
}

int main(void)
{
	test_nist();
	test_million_a();
	test_padding_boundaries();
	test_pieces();
	test_fd();
	return check_done();
}
