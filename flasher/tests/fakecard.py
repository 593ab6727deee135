#!/usr/bin/python3
"""A misbehaving card for metis-flash's fault tests, served over FUSE.

Serves one file, MOUNTPOINT/card, of --size bytes, with direct_io (no page cache in
FUSE, so a loop device on top reaches this process for every block):

  --real-size N   only N bytes of storage; offsets wrap modulo N, as a counterfeit
                  (fake-capacity) card does
  --eio-at N      a write covering byte N fails with EIO (once armed, every time)
  --delay-ms N    sleep N ms per write, so a test can interrupt mid-write
  --log FILE      rewrite FILE with the total bytes written after each write

Needs Debian's python3-fusepy (module `fusepy`). Runs in the foreground until
unmounted (`fusermount -u MOUNTPOINT`).
"""
import argparse
import errno
import os
import stat
import time

import fusepy as fuse


class Card(fuse.Operations):
    def __init__(self, size, real, eio_at, delay, log):
        self.size = size
        self.real = real
        self.data = bytearray(real)
        self.eio_at = eio_at
        self.delay = delay
        self.log = log
        self.written = 0

    def getattr(self, path, fh=None):
        if path == "/":
            return dict(st_mode=stat.S_IFDIR | 0o755, st_nlink=2)
        if path == "/card":
            return dict(st_mode=stat.S_IFREG | 0o644, st_nlink=1, st_size=self.size)
        raise fuse.FuseOSError(errno.ENOENT)

    def readdir(self, path, fh):
        return [".", "..", "card"]

    def open(self, path, flags):
        return 0

    def truncate(self, path, length, fh=None):
        return 0

    def flush(self, path, fh):
        return 0

    def fsync(self, path, datasync, fh):
        return 0

    def _spans(self, offset, length):
        pos, end = offset, min(offset + length, self.size)
        while pos < end:
            at = pos % self.real
            n = min(end - pos, self.real - at)
            yield pos - offset, at, n
            pos += n

    def read(self, path, size, offset, fh):
        out = bytearray()
        for _, at, n in self._spans(offset, size):
            out += self.data[at:at + n]
        return bytes(out)

    def write(self, path, buf, offset, fh):
        if self.eio_at is not None and offset <= self.eio_at < offset + len(buf):
            raise fuse.FuseOSError(errno.EIO)
        for rel, at, n in self._spans(offset, len(buf)):
            self.data[at:at + n] = buf[rel:rel + n]
        self.written += len(buf)
        if self.log:
            tmp = self.log + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(self.written))
            os.replace(tmp, self.log)
        if self.delay:
            time.sleep(self.delay / 1000)
        return len(buf)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mountpoint")
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--real-size", type=int)
    p.add_argument("--eio-at", type=int)
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--log")
    a = p.parse_args()
    card = Card(a.size, a.real_size or a.size, a.eio_at, a.delay_ms, a.log)
    fuse.FUSE(card, a.mountpoint, foreground=True, nothreads=True, direct_io=True,
              big_writes=True, max_write=131072)


if __name__ == "__main__":
    main()
