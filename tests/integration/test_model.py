# SPDX-License-Identifier: MIT
"""Model-based random test: a stashfs mount against a plain directory.

Seeded random sequences of file operations run on a stashfs mount and on a
plain directory of the same disk side by side; every result and errno is
compared, and so are both trees (content, size, mode, mtime) after every
close.  The plain side is ext4 (or whatever the temp directory is on) with
the README's "Differences from a local file system" applied on top,
explicitly (numbers as in that list):

1. commit at close, snapshot per open: a writer works on a private copy of
   the file (``Plain`` keeps it in a shadow file outside the tree) that
   replaces the file by rename when the writer closes (``>>`` appends its
   bytes to what is committed then); truncating by name commits a new
   version the same way, so readers keep the version they opened; a
   writer that only truncated commits at its last close (waited for);
2. a name exists only from its first commit: a name being created is left
   alone by the generator until its writer closes, but for mkdir and mknod
   over it (``EEXIST``, as on ext4);
3. a reader's fstat/SEEK_END after its version was replaced, and a
   writer's while another writer of the file is open here, are not
   compared (one size per inode); fchmod/futimens through any descriptor
   reach every writer of the file;
4. no links or special files except regular files from mknod (``EPERM``);
5. names beginning with ``.stashfs`` are reserved (``EPERM``); names ending
   in ``.json`` are views (never generated here, and not listed);
   ``NAME.json`` exists exactly when stash ``NAME`` does.

Refused writes (6), xattrs (7), expiry (8) and mmap/telldir (9) are not
generated.  Everything else must match the plain directory exactly.

Knobs (environment):
  STASHFS_MODEL_SEED=N      run only seed N (default: a few fixed seeds)
  STASHFS_MODEL_OPS=N       operations per seed (default 2000)
  STASHFS_MODEL_SEEDS=N     how many seeds when no seed is given (default 4)
  STASHFS_MODEL_SKIP=a,b    leave out operations (names as in Model.run: mknod,
                            deep, rename, ...) to look past a known defect
  STASHFS_MODEL_ONLY=a,b    run only these operations
  STASHFS_MODEL_OPEN_FILES=0|1   compare open files after their name is
      removed or renamed, and a writer's own size, as on ext4 (default 1)
"""
import ctypes
import errno
import os
import random
import stat
import subprocess
import time

import pytest

# The open-file behaviours of ext4 that stashfs matches once the lifecycle
# work is in: a writer's fstat/SEEK_END size, fstat/ftruncate/commit of a
# descriptor whose name was removed or renamed, a file removed while open
# for writing staying removed.  Off: the generator avoids those situations
# and skips the writer's size.
OPEN_FILES_AS_EXT4 = os.environ.get("STASHFS_MODEL_OPEN_FILES", "1") != "0"

OPS = int(os.environ.get("STASHFS_MODEL_OPS", "2000"))
SKIP = set(filter(None, os.environ.get("STASHFS_MODEL_SKIP", "").split(",")))
ONLY = set(filter(None, os.environ.get("STASHFS_MODEL_ONLY", "").split(",")))
if os.environ.get("STASHFS_MODEL_SEED"):
    SEEDS = [int(os.environ["STASHFS_MODEL_SEED"])]
else:
    SEEDS = list(range(1, 1 + int(os.environ.get("STASHFS_MODEL_SEEDS", "4"))))

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
_libc = ctypes.CDLL(None, use_errno=True)
_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                            ctypes.c_uint]

FILE_NAMES = ["a", "b", "c", "e f", "g"]
DIR_NAMES = ["d", "x"]
LONG = "L" * 200                  # deep chains of these pass PATH_MAX
MODES = [0o600, 0o644, 0o640, 0o755, 0o700, 0o444, 0o666]
DIR_MODES = [0o755, 0o700, 0o750, 0o777]
UMASKS = [0o022, 0o077, 0o000, 0o027]
TICK = 0.012                      # longer than a kernel timestamp tick
CHUNK = 3000                      # longest relative path handed to one syscall


def renameat2(olddir, old, newdir, new, flags):
    if _libc.renameat2(olddir, old.encode(), newdir, new.encode(), flags) < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def short(text):
    return text.replace(LONG, "L{200}")


def join(d, name):
    return name if not d else d + "/" + name


def parent_of(path):
    return path.rpartition("/")[0]


class Side:
    """One tree under test, opened by descriptor so any depth works."""

    def __init__(self, root):
        self.root = root
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY)

    def close(self):
        os.close(self.root_fd)

    def at(self, path):
        """(dirfd, rest, fds to close): @path from a dirfd, in chunks of CHUNK bytes."""
        fd, fds, rest = self.root_fd, [], path
        while len(rest) > CHUNK:
            cut = rest.rindex("/", 0, CHUNK)
            fd = os.open(rest[:cut], os.O_PATH | os.O_DIRECTORY, dir_fd=fd)
            fds.append(fd)
            rest = rest[cut + 1:]
        return fd, rest, fds

    def call(self, fn, path, *args, **kw):
        fd, rest, fds = self.at(path)
        try:
            return fn(rest, *args, dir_fd=fd, **kw)
        finally:
            for f in fds:
                os.close(f)

    def rename(self, src, dst, flags):
        sfd, srest, sfds = self.at(src)
        dfd, drest, dfds = self.at(dst)
        try:
            if flags:
                renameat2(sfd, srest, dfd, drest, flags)
            else:
                os.rename(srest, drest, src_dir_fd=sfd, dst_dir_fd=dfd)
        finally:
            for f in sfds + dfds:
                os.close(f)

    def tree(self):
        """{path: (kind, mode, size, content or names, mtime_ns)} of everything below."""
        out = {}
        for top, dirs, files, dfd in os.fwalk(".", dir_fd=self.root_fd):
            rel = "" if top == "." else top[2:]
            for name in dirs + files:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
                p = join(rel, name)
                if stat.S_ISREG(st.st_mode):
                    fd = os.open(name, os.O_RDONLY, dir_fd=dfd)
                    try:
                        body = read_all(fd)
                    finally:
                        os.close(fd)
                    out[p] = ("f", stat.S_IMODE(st.st_mode), st.st_size, body, st.st_mtime_ns,
                              st.st_ino)
                elif stat.S_ISDIR(st.st_mode):
                    out[p] = ("d", stat.S_IMODE(st.st_mode), None, None, None)
                else:
                    out[p] = ("?", stat.S_IFMT(st.st_mode), None, None, None)
        return out


def read_all(fd):
    chunks = []
    while True:
        b = os.read(fd, 1 << 16)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def outcome(fn, *args, **kw):
    try:
        return ("ok", fn(*args, **kw))
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


class Plain(Side):
    """The plain directory with commit-at-close applied on top (see above)."""

    def __init__(self, root, shadow):
        super().__init__(root)
        self.shadow = shadow
        self.nshadow = 0
        self.objects = {}           # inode of the committed file -> object id
        self.next_obj = 1
        self.gen = {}               # object id -> commits since it appeared
        # Inode numbers name objects: while a handle may still use an
        # object, an O_PATH descriptor keeps its current inode alive so the
        # number is not handed to a new file.
        self.held = {}              # object id -> [O_PATH fd, handles]

    def hold(self, obj, fd):
        if obj in self.held:
            self.held[obj][1] += 1
        else:
            self.held[obj] = [os.open("/proc/self/fd/%d" % fd, os.O_PATH), 1]

    def release(self, obj):
        entry = self.held[obj]
        entry[1] -= 1
        if not entry[1]:
            os.close(entry[0])
            del self.held[obj]

    def obj_of(self, ino):
        if ino not in self.objects:
            self.objects[ino] = self.next_obj
            self.next_obj += 1
        return self.objects[ino]

    def where(self, obj):
        """Current path of object @obj, or None when its name is gone."""
        ino = next((i for i, o in self.objects.items() if o == obj), None)
        if ino is None:
            return None
        for top, dirs, files, dfd in os.fwalk(".", dir_fd=self.root_fd):
            for name in files:
                if os.stat(name, dir_fd=dfd, follow_symlinks=False).st_ino == ino:
                    return join("" if top == "." else top[2:], name)
        return None

    def new_shadow(self, content, accmode, append):
        path = os.path.join(self.shadow, "s%d" % self.nshadow)
        self.nshadow += 1
        with open(path, "wb") as f:
            f.write(content)
        fd = os.open(path, accmode | (os.O_APPEND if append else 0))
        whole = os.open(path, os.O_RDONLY)
        os.unlink(path)
        return fd, whole

    def replace(self, path, content, obj, mode=None):
        """Publish @content as @path: a new file (with the old mode unless
        @mode is given) renamed over it."""
        st = self.call(os.stat, path)
        tmp = join(parent_of(path), ".model-tmp")
        fd = self.call(os.open, tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, content)
            os.fchmod(fd, stat.S_IMODE(st.st_mode) if mode is None else mode)
        finally:
            os.close(fd)
        self.rename(tmp, path, 0)
        self.gen[obj] = self.gen.get(obj, 0) + 1
        self.objects.pop(st.st_ino, None)
        self.objects[self.call(os.stat, path).st_ino] = obj
        if obj in self.held:
            os.close(self.held[obj][0])
            self.held[obj][0] = self.call(os.open, path, os.O_PATH)


class Handle:
    """One descriptor open on both sides."""

    def __init__(self, path, flags, sfd, pfd, writer, obj, created, base):
        self.path = path
        self.flags = flags
        self.sfd = sfd              # stashfs descriptor
        self.pfd = pfd              # plain: the real fd (readers) or the shadow (writers)
        self.writer = writer
        self.obj = obj
        self.created = created      # its name appears at the first commit
        self.base = base            # committed length at open (appenders)
        self.dirty = bool(flags & os.O_TRUNC) and base > 0
        self.moved = False          # its name was removed or renamed while open
        self.id = None
        self.wrote = False          # a write or ftruncate went through it
        self.mode = None            # fchmod through it (writers: for the new version)
        self.mtime = None           # futimens through it, if no write came after
        self.truncated = False      # ftruncate through it


class Model:
    def __init__(self, seed, mnt_root, plain_root, shadow, log):
        self.rng = random.Random(seed)
        self.seed = seed
        self.s = Side(mnt_root)
        self.p = Plain(plain_root, shadow)
        self.handles = []
        self.log = log
        self.step = 0
        self.mtimes = {}            # path -> (stashfs mtime, plain mtime) at the last compare

    # ---- helpers --------------------------------------------------------

    def fail(self, what):
        tail = "\n".join(self.log[-60:])
        pytest.fail("seed %d, step %d: %s\nlast operations:\n%s\n"
                    "reproduce: STASHFS_MODEL_SEED=%d STASHFS_MODEL_OPS=%d"
                    % (self.seed, self.step, what, tail, self.seed, OPS))

    def same(self, what, a, b):
        if a != b:
            self.fail(short("%s: stashfs %r, plain directory %r" % (what, a, b)))

    def pending(self):
        """Names whose state is the writer's to decide at its close: new
        names (they exist from the first commit), names whose writer
        changed mode or mtime for the version it writes, and (open-file
        comparisons off) names whose writer truncated: the kernel takes the
        writer's size for the name until the commit."""
        return {h.path for h in self.handles if not h.moved and (
            h.created or (h.writer and (h.mode is not None or h.mtime is not None)) or
            (h.truncated and not OPEN_FILES_AS_EXT4))}

    def unseen(self):
        """Names whose by-name state the model does not look at: pending()
        ones, and names open for writing, since
        stashfs answers a writer's own process with the version it writes
        and this model is one process; other processes see the committed
        one."""
        names = self.pending() | {h.path for h in self.handles if h.writer and not h.moved}
        if OPEN_FILES_AS_EXT4:
            # A writer whose name (or a directory above it) was renamed
            # writes the file now found under the new name.
            names |= {self.p.where(h.obj) for h in self.handles if h.writer and h.moved}
            names.discard(None)
        return names

    def busy(self, path):
        """@path or something below it is a name being created."""
        return any(p == path or p.startswith(path + "/") for p in self.pending())

    def files_dirs(self):
        files, dirs = [], [""]
        for top, ds, fs, _ in os.fwalk(".", dir_fd=self.p.root_fd):
            ds.sort()
            rel = "" if top == "." else top[2:]
            dirs += [join(rel, d) for d in sorted(ds)]
            files += [join(rel, f) for f in sorted(fs) if not f.startswith(".model")]
        pend = self.pending()
        return [f for f in files if f not in pend], dirs

    def pick_path(self, kind="any"):
        files, dirs = self.files_dirs()
        r = self.rng.random()
        if kind == "file" and files and r < 0.75:
            return self.rng.choice(files)
        if kind == "dir" and len(dirs) > 1 and r < 0.75:
            return self.rng.choice(dirs[1:])
        if kind == "any" and r < 0.6:
            return self.rng.choice(files + dirs[1:] or [""]) or "a"
        d = self.rng.choice(dirs)
        pool = DIR_NAMES if kind == "dir" else FILE_NAMES
        return join(d, self.rng.choice(pool + (FILE_NAMES if kind == "any" else [])))

    def open_names(self):
        return {h.path for h in self.handles if not h.moved}

    def touches_open(self, path):
        return any(p == path or p.startswith(path + "/") for p in self.open_names())

    def note(self, text):
        self.log.append("%5d %s" % (self.step, short(text)))

    # ---- operations -----------------------------------------------------

    def op_open(self):
        path = self.pick_path("file")
        if self.busy(path):
            return
        acc = self.rng.choice([os.O_RDONLY, os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
        extra = 0
        if acc != os.O_RDONLY:
            extra = self.rng.choice([0, os.O_CREAT, os.O_CREAT | os.O_TRUNC, os.O_TRUNC,
                                     os.O_CREAT | os.O_EXCL, os.O_APPEND | os.O_CREAT])
        flags = acc | extra
        mode = self.rng.choice(MODES)
        self.note("open %r flags=%o mode=%o" % (path, flags, mode))
        existed = outcome(self.p.call, os.stat, path)
        a = outcome(self.s.call, os.open, path, flags, mode)
        # The plain side opens the real file for the errno (and the creation),
        # truncating only an empty file (mtime moves at the open, as stashfs
        # does): other content changes at the commit.
        keep = os.O_TRUNC if existed[0] != "ok" or existed[1].st_size == 0 else 0
        b = outcome(self.p.call, os.open, path, flags & ~(os.O_TRUNC & ~keep | os.O_APPEND), mode)
        self.same("open %r" % path, a[0] == "ok" or a, b[0] == "ok" or b)
        if a[0] != "ok":
            return
        pfd = b[1]
        created = existed[0] != "ok"
        st = os.fstat(pfd)
        obj = self.p.obj_of(st.st_ino)
        self.p.hold(obj, pfd)
        writer = acc != os.O_RDONLY
        base = st.st_size
        if writer:
            content = b""
            if not flags & os.O_TRUNC:
                rfd = os.open("/proc/self/fd/%d" % pfd, os.O_RDONLY)
                try:
                    content = read_all(rfd)
                finally:
                    os.close(rfd)
            os.close(pfd)
            pfd, whole = self.p.new_shadow(content, acc, bool(flags & os.O_APPEND))
        h = Handle(path, flags, a[1], pfd, writer, obj, created, base)
        h.whole = whole if writer else None
        h.id = self.step
        h.gen = self.p.gen.get(obj, 0)
        self.handles.append(h)

    def pick_handle(self):
        return self.rng.choice(self.handles) if self.handles else None

    def op_write(self):
        h = self.pick_handle()
        if not h:
            return
        data = bytes(self.rng.choice(b"abcxyz\n") for _ in range(self.rng.choice([1, 7, 100, 5000])))
        if h.flags & os.O_APPEND or self.rng.random() < 0.5:
            self.note("write #%d %r %d bytes" % (h.id, h.path, len(data)))
            a = outcome(os.write, h.sfd, data)
            b = outcome(os.write, h.pfd, data)
        else:
            off = self.rng.choice([0, 1, 10, 100, 4096, 10000])
            self.note("pwrite #%d %r %d bytes at %d" % (h.id, h.path, len(data), off))
            a = outcome(os.pwrite, h.sfd, data, off)
            b = outcome(os.pwrite, h.pfd, data, off)
        self.same("write %r" % h.path, a, b)
        h.dirty |= b[0] == "ok"
        h.wrote |= b[0] == "ok"
        if b[0] == "ok":
            h.mtime = None

    def op_read(self):
        h = self.pick_handle()
        if not h:
            return
        size = self.rng.choice([1, 10, 4096, 100000])
        off = self.rng.choice([0, 3, 100, 5000])
        self.note("pread #%d %r %d at %d" % (h.id, h.path, size, off))
        self.same("pread %r" % h.path, outcome(os.pread, h.sfd, size, off),
                  outcome(os.pread, h.pfd, size, off))

    def replaced(self, h):
        """Documented: the kernel keeps one size per inode, so a reader's
        fstat and SEEK_END show the name's committed size once another
        version replaced the one it reads (its reads keep the snapshot)."""
        return not h.writer and self.p.gen.get(h.obj, 0) != h.gen

    def shared(self, h):
        """Documented: the kernel keeps one size per file, and stashfs gives
        it the version a writer of this process writes, so with another
        descriptor open for writing on the same file here, fstat and
        SEEK_END of @h show that writer's size."""
        return any(x is not h and x.writer and x.obj == h.obj for x in self.handles)

    def op_lseek_end(self):
        h = self.pick_handle()
        if not h or (h.writer and not OPEN_FILES_AS_EXT4) or self.replaced(h):
            return
        if self.shared(h):
            return
        if not h.writer and h.path in self.unseen():
            return
        if stat.S_ISDIR(os.fstat(h.pfd).st_mode):
            return      # directory offsets are the file system's own cookies
        self.note("lseek #%d %r SEEK_END" % (h.id, h.path))
        self.same("lseek(SEEK_END) %r" % h.path, outcome(os.lseek, h.sfd, 0, os.SEEK_END),
                  outcome(os.lseek, h.pfd, 0, os.SEEK_END))

    def fstat_view(self, st, h, side):
        view = (stat.S_IFMT(st.st_mode), st.st_size)
        if h.writer and side == "p":
            # The shadow stands for the version being written: mode and links
            # are those of the file it will replace.
            where = self.p.where(h.obj)
            return view + (1 if where is not None else 0,)
        return view + (st.st_nlink,)

    def op_fstat(self):
        h = self.pick_handle()
        if not h:
            return
        if not OPEN_FILES_AS_EXT4 and (h.writer or h.moved):
            return
        if not h.writer and h.path in self.unseen():
            return
        if self.replaced(h) or self.shared(h):
            return
        self.note("fstat #%d %r" % (h.id, h.path))
        a = outcome(os.fstat, h.sfd)
        b = outcome(os.fstat, h.pfd)
        a = (a[0], self.fstat_view(a[1], h, "s")) if a[0] == "ok" else a
        b = (b[0], self.fstat_view(b[1], h, "p")) if b[0] == "ok" else b
        self.same("fstat %r (type, size, nlink)" % h.path, a, b)

    def op_ftruncate(self):
        h = self.pick_handle()
        if not h or h.flags & os.O_APPEND or (h.moved and not OPEN_FILES_AS_EXT4):
            return
        size = self.rng.choice([0, 1, 5, 100, 8000])
        self.note("ftruncate #%d %r %d" % (h.id, h.path, size))
        a = outcome(os.ftruncate, h.sfd, size)
        b = outcome(os.ftruncate, h.pfd, size)
        self.same("ftruncate %r" % h.path, a, b)
        h.truncated |= b[0] == "ok"
        h.dirty |= b[0] == "ok"
        h.wrote |= b[0] == "ok"
        if b[0] == "ok":
            h.mtime = None

    def op_close(self):
        h = self.pick_handle()
        if not h:
            return
        self.handles.remove(h)
        self.p.release(h.obj)
        self.note("close #%d %r%s" % (h.id, h.path, " (moved)" if h.moved else ""))
        late = h.writer and h.dirty and not h.wrote and not h.moved
        before = self.committed(h.path) if late else None
        a = outcome(os.close, h.sfd)
        where = None
        if h.writer and h.dirty:
            content = read_all_at(h.whole)
            where = self.p.where(h.obj)
            if where is None and not h.moved:
                where = h.path
            if where is not None:
                if h.flags & os.O_APPEND:
                    cur = self.p.call(os.open, where, os.O_RDONLY)
                    try:
                        content = read_all(cur) + content[h.base:]
                    finally:
                        os.close(cur)
                self.p.replace(where, content, h.obj, h.mode)
                if h.mtime is not None:
                    self.p.call(os.utime, where, ns=(h.mtime, h.mtime))
        elif h.writer and (h.mode is not None or h.mtime is not None):
            # fchmod/futimens alone through a writer change no content: the
            # mode and mtime apply at its close to what is committed then.
            where = self.p.where(h.obj)
            if where is not None and h.mode is not None:
                self.p.call(os.chmod, where, h.mode)
            if where is not None and h.mtime is not None:
                self.p.call(os.utime, where, ns=(h.mtime, h.mtime))
                self.settle_mtime(where, h.mtime)
        os.close(h.pfd)
        if h.whole is not None:
            os.close(h.whole)
        self.same("close %r" % h.path, a, ("ok", None))
        if h.dirty and not h.wrote and where is not None:
            # Documented: a writer that only truncated (`: > f`) commits at
            # the last close, which FUSE delivers after close() returned.
            old = [m[0] for k, m in self.mtimes.items() if k[0] == where]
            if before:
                old.append(before[1])
            if h.mtime is not None:
                old = []        # the commit keeps the futimens time: wait for the size only
            self.settle(where, len(content), old)
        self.compare_trees()

    def committed(self, path):
        """(size, mtime_ns) of what is committed as @path, or None.  While
        a writer of it is open here, this process sees the version that
        writer writes: ask another process then."""
        if path not in self.unseen():
            st = outcome(self.s.call, os.stat, path)
            return (st[1].st_size, st[1].st_mtime_ns) if st[0] == "ok" else None
        fd, rest, fds = self.s.at(path)
        try:
            r = subprocess.run(["stat", "-c", "%s %.9Y", "--", rest], capture_output=True,
                               text=True, cwd="/proc/%d/fd/%d" % (os.getpid(), fd))
        finally:
            for f in fds:
                os.close(f)
        if r.returncode != 0:
            return None
        size, mtime = r.stdout.split()
        return int(size), int(mtime.replace(".", ""))

    def settle_mtime(self, path, mtime, timeout=5.0):
        """Wait for a futimens-only writer's mtime, applied at its release."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.committed(path)
            if st is None or st[1] == mtime:
                return
            time.sleep(0.002)

    def settle(self, path, size, old, timeout=5.0):
        """Wait for the commit at release: the size, and an mtime not in @old."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            st = self.committed(path)
            if st is not None and st[0] == size and st[1] not in old:
                return
            time.sleep(0.002)

    def op_fmeta(self):
        """fchmod or futimens through a descriptor (cp -p, tar -x, rsync -a).
        As on ext4 (one inode), it reaches every writer of the file: the
        versions they commit carry it."""
        h = self.pick_handle()
        if not h or stat.S_ISDIR(os.fstat(h.pfd).st_mode):
            return
        if h.writer and not OPEN_FILES_AS_EXT4 or h.moved or self.replaced(h):
            return
        if self.rng.random() < 0.5:
            mode = self.rng.choice(MODES)
            self.note("fchmod #%d %r %o" % (h.id, h.path, mode))
            a = outcome(os.fchmod, h.sfd, mode)
            b = ("ok", None) if h.writer else outcome(os.fchmod, h.pfd, mode)
            for w in self.writers_of(h, b):
                w.mode = mode
        else:
            t = self.rng.randint(10**9, 2 * 10**9) * 10**9 + self.rng.randint(0, 10**9 - 1)
            self.note("futimens #%d %r %d" % (h.id, h.path, t))
            a = outcome(os.utime, h.sfd, ns=(t, t))
            b = ("ok", None) if h.writer else outcome(os.utime, h.pfd, ns=(t, t))
            for w in self.writers_of(h, b):
                w.mtime = t
        self.same("fchmod/futimens %r" % h.path, a, b)

    def writers_of(self, h, result):
        """The writers a metadata change through @h reaches, if it succeeded."""
        if result[0] != "ok":
            return []
        return [w for w in self.handles if w.writer and w.obj == h.obj]

    def op_stat(self):
        path = self.pick_path()
        if self.busy(path) or path in self.unseen():
            return
        self.note("stat %r" % path)
        a = outcome(self.s.call, os.stat, path, follow_symlinks=False)
        b = outcome(self.p.call, os.stat, path, follow_symlinks=False)
        view = lambda r: r if r[0] != "ok" else (
            "ok", stat.S_IFMT(r[1].st_mode), stat.S_IMODE(r[1].st_mode),
            r[1].st_size if stat.S_ISREG(r[1].st_mode) else None)
        self.same("stat %r (type, mode, size)" % path, view(a), view(b))

    def op_truncate(self):
        path = self.pick_path("file")
        if self.busy(path) or path in self.unseen():
            return
        size = self.rng.choice([0, 2, 50, 5000])
        self.note("truncate %r %d" % (path, size))
        a = outcome(self.s.call, truncate_at, path, size)
        st = outcome(self.p.call, os.stat, path)
        if st[0] == "ok" and stat.S_ISREG(st[1].st_mode) and st[1].st_size != size:
            # A new version, committed: readers keep theirs.
            fd = self.p.call(os.open, path, os.O_RDONLY)
            try:
                body = read_all(fd)
            finally:
                os.close(fd)
            body = body[:size] + b"\0" * max(0, size - len(body))
            self.p.replace(path, body, self.p.obj_of(st[1].st_ino))
            b = ("ok", None)
        else:
            b = outcome(self.p.call, truncate_at, path, size)
        self.same("truncate %r" % path, a, b)

    def op_mkdir(self):
        # Also over a name being created: the create made it (EEXIST).
        pend = sorted(self.pending())
        if pend and self.rng.random() < 0.2:
            path = self.rng.choice(pend)
        else:
            path = self.pick_path("dir")
        mode = self.rng.choice(DIR_MODES)
        self.note("mkdir %r %o" % (path, mode))
        self.same("mkdir %r" % path, outcome(self.s.call, os.mkdir, path, mode),
                  outcome(self.p.call, os.mkdir, path, mode))

    def op_deep(self):
        """A chain of long directory names, past PATH_MAX from the root."""
        files, dirs = self.files_dirs()
        d = max(dirs, key=len)
        if len(d) > 6000:
            return
        for _ in range(self.rng.randint(1, 12)):
            d = join(d, LONG + str(self.rng.randint(0, 1)))
            self.note("mkdir %d-byte path" % len(d))
            a = outcome(self.s.call, os.mkdir, d, 0o755)
            b = outcome(self.p.call, os.mkdir, d, 0o755)
            self.same("mkdir of a %d-byte path" % len(d), a, b)

    def op_rmdir(self):
        path = self.pick_path("dir")
        if self.busy(path):
            return
        if self.touches_open(path) and not OPEN_FILES_AS_EXT4:
            return
        self.note("rmdir %r" % path)
        self.same("rmdir %r" % path, outcome(self.s.call, os.rmdir, path),
                  outcome(self.p.call, os.rmdir, path))

    def mark_moved(self, path):
        for h in self.handles:
            if not h.moved and (h.path == path or h.path.startswith(path + "/")):
                h.moved = True

    def op_unlink(self):
        path = self.pick_path("file")
        if self.busy(path) or (self.touches_open(path) and not OPEN_FILES_AS_EXT4):
            return
        self.note("unlink %r" % path)
        a = outcome(self.s.call, os.unlink, path)
        b = outcome(self.p.call, os.unlink, path)
        self.same("unlink %r" % path, a, b)
        if b[0] == "ok":
            self.mark_moved(path)

    def op_rename(self):
        src = self.pick_path()
        dst = self.pick_path("any")
        flags = self.rng.choice([0, 0, 0, RENAME_NOREPLACE, RENAME_EXCHANGE])
        if self.busy(src) or self.busy(dst):
            return
        if not OPEN_FILES_AS_EXT4 and (self.touches_open(src) or self.touches_open(dst)):
            return
        if len(src) > 3500 or len(dst) > 3500:
            return
        self.note("rename %r -> %r flags=%d" % (src, dst, flags))
        a = outcome(self.s.rename, src, dst, flags)
        b = outcome(self.p.rename, src, dst, flags)
        self.same("rename %r -> %r flags %d" % (src, dst, flags), a, b)
        if b[0] == "ok" and src != dst:
            self.mark_moved(src)
            self.mark_moved(dst)

    def op_chmod(self):
        path = self.pick_path()
        if self.busy(path) or path in self.unseen():
            return
        mode = self.rng.choice(MODES + DIR_MODES)
        self.note("chmod %r %o" % (path, mode))
        self.same("chmod %r" % path, outcome(self.s.call, os.chmod, path, mode),
                  outcome(self.p.call, os.chmod, path, mode))

    def op_utimens(self):
        path = self.pick_path()
        if self.busy(path) or path in self.unseen():
            return
        t = self.rng.randint(10**9, 2 * 10**9) * 10**9 + self.rng.randint(0, 10**9 - 1)
        self.note("utimens %r %d" % (path, t))
        self.same("utimens %r" % path, outcome(self.s.call, os.utime, path, ns=(t, t)),
                  outcome(self.p.call, os.utime, path, ns=(t, t)))

    def op_umask(self):
        m = self.rng.choice(UMASKS)
        self.note("umask %o" % m)
        os.umask(m)

    def op_mknod(self):
        # Also over a name being created or written: EEXIST, as on ext4.
        path = self.pick_path("file")
        kind = self.rng.choice([stat.S_IFREG, stat.S_IFREG, stat.S_IFIFO])
        mode = kind | self.rng.choice(MODES)
        self.note("mknod %r %o" % (path, mode))
        a = outcome(self.s.call, os.mknod, path, mode)
        if kind == stat.S_IFREG:
            b = outcome(self.p.call, os.mknod, path, mode)
        else:
            # No special files in the store (documented): EPERM, unless the
            # name is taken, which any file system says first.
            b = outcome(self.p.call, os.stat, path, follow_symlinks=False)
            b = ("err", "EEXIST") if b[0] == "ok" else ("err", "EPERM")
        self.same("mknod %r" % path, a, b)

    def op_reserved(self):
        d = self.rng.choice(self.files_dirs()[1])
        path = join(d, ".stashfs" + self.rng.choice(["", "-x", "y"]))
        self.note("create reserved %r" % path)
        a = outcome(self.s.call, os.open, path, os.O_WRONLY | os.O_CREAT, 0o644)
        if a[0] == "ok":
            os.close(a[1])
        self.same("create of reserved %r" % path, a, ("err", "EPERM"))

    def op_view(self):
        """NAME.json exists exactly when stash NAME does (never listed)."""
        path = self.pick_path("file")
        if self.busy(path):
            return
        if path in self.unseen():
            return
        self.note("stat %r.json" % path)
        a = outcome(self.s.call, os.stat, path + ".json")
        b = outcome(self.p.call, os.stat, path)
        if b[0] == "ok" and not stat.S_ISREG(b[1].st_mode):
            return      # a directory's NAME.json: nothing the model predicts
        self.same("stat %r.json (exists)" % path, a[0], b[0])

    def op_listdir(self):
        d = self.rng.choice(self.files_dirs()[1])
        self.note("listdir %r" % d)
        pend = self.unseen()
        ls = lambda side: outcome(lambda: sorted(
            n for n in side.call(listdir_at, d)
            if join(d, n) not in pend and not n.startswith(".model")))
        self.same("listdir %r" % d, ls(self.s), ls(self.p))

    # ---- trees ----------------------------------------------------------

    def compare_trees(self):
        pend = self.unseen()
        ta = {p: v for p, v in self.s.tree().items() if p not in pend}
        tb = {p: v for p, v in self.p.tree().items() if p not in pend and ".model" not in p}
        self.same("names in the tree", sorted(ta), sorted(tb))
        for p in tb:
            a, b = ta[p], tb[p]
            self.same("%r (type, mode, size)" % p, a[:3], b[:3])
            if a[3] != b[3]:
                at = next((i for i, (x, y) in enumerate(zip(a[3], b[3])) if x != y),
                          min(len(a[3]), len(b[3])))
                self.fail("%r: content differs from byte %d: stashfs %r, plain directory %r"
                          % (p, at, a[3][at:at + 20], b[3][at:at + 20]))
            if a[0] != "f":
                continue
            # The same file as at the last look (not a new one under the name)?
            key = (p, self.p.obj_of(b[5]))
            prev = self.mtimes.get(key)
            if prev is not None:
                self.same("%r mtime changed since the last close (was %d/%d, now %d/%d)"
                          % (p, prev[0], prev[1], a[4], b[4]),
                          a[4] != prev[0], b[4] != prev[1])
            self.mtimes[key] = (a[4], b[4])
        for key in list(self.mtimes):
            if key[0] not in tb:
                del self.mtimes[key]
        # File times come from a coarse clock: let it tick past what was
        # just seen, or the next change may carry the same mtime.
        now = time.time()
        recent = [v[4] / 1e9 for v in list(ta.values()) + list(tb.values())
                  if v[0] == "f" and abs(v[4] / 1e9 - now) < TICK]
        if recent:
            time.sleep(max(0.0, max(recent) + TICK - now))

    def run(self, count):
        ops = [(self.op_open, 12), (self.op_write, 14), (self.op_read, 6),
               (self.op_fstat, 5), (self.op_lseek_end, 2), (self.op_ftruncate, 3),
               (self.op_close, 10), (self.op_stat, 4), (self.op_truncate, 2),
               (self.op_mkdir, 4), (self.op_rmdir, 3), (self.op_unlink, 3),
               (self.op_rename, 6), (self.op_chmod, 2), (self.op_utimens, 2),
               (self.op_umask, 1), (self.op_mknod, 1), (self.op_reserved, 1),
               (self.op_listdir, 2), (self.op_deep, 0.3), (self.op_fmeta, 2),
               (self.op_view, 1)]
        ops = [(f, w) for f, w in ops if f.__name__[3:] not in SKIP and
               (not ONLY or f.__name__[3:] in ONLY)]
        fns = [f for f, _ in ops]
        weights = [w for _, w in ops]
        for self.step in range(count):
            if len(self.handles) > 6:
                self.op_close()
                continue
            self.rng.choices(fns, weights)[0]()
        while self.handles:
            self.op_close()
        self.compare_trees()


def truncate_at(path, size, dir_fd):
    # truncate(2) has no *at form: go through the directory's descriptor.
    os.truncate("/proc/self/fd/%d/%s" % (dir_fd, path), size)


def listdir_at(path, dir_fd):
    fd = os.open(path or ".", os.O_RDONLY | os.O_DIRECTORY, dir_fd=dir_fd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def read_all_at(fd):
    out, off = [], 0
    while True:
        b = os.pread(fd, 1 << 16, off)
        if not b:
            return b"".join(out)
        out.append(b)
        off += len(b)


def run_model(env, seed, count):
    env.mount()
    plain = env.tmp / "plain"
    shadow = env.tmp / "shadow"
    for d in (plain / "w", shadow):
        d.mkdir(parents=True)
    os.mkdir(env.path("w"))
    old = os.umask(0o022)
    log = []
    m = Model(seed, env.path("w"), str(plain / "w"), str(shadow), log)
    try:
        m.run(count)
    finally:
        os.umask(old)
        for h in m.handles:
            for fd in (h.sfd, h.pfd, h.whole):
                if fd is None:
                    continue
                try:
                    os.close(fd)
                except OSError:
                    pass
        for fd, _ in m.p.held.values():
            os.close(fd)
        m.s.close()
        m.p.close()
    return m


@pytest.mark.parametrize("seed", SEEDS)
def test_model_against_plain_directory(env, seed):
    run_model(env, seed, OPS)
