/* SPDX-License-Identifier: MIT */
/*
 * xattr.h - metadata of objects by path (xattr.c).
 * Not a public header.
 */
#ifndef STASHFS_XATTR_H
#define STASHFS_XATTR_H

#include "stashfs/store.h"
#include "store_priv.h"

#endif
