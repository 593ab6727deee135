#!/usr/bin/python3
"""A misbehaving card for metis-flash's fault tests, served over FUSE.

Serves one file, MOUNTPOINT/card, of --size bytes, with direct_io (no page cache in
FUSE, so a loop device on top reaches this process for every block):

  --real-size N   only N bytes of storage; offsets wrap modulo N, as a counterfeit
                  (fake-capacity) card does
  --eio-at N      a write covering byte N fails with EIO (once armed, every time)
  --eio-arm FILE  ...but only while FILE exists (a test arms the fault between runs)
  --delay-ms N    sleep N ms per write, so a test can interrupt mid-write
  --log FILE      rewrite FILE with the total bytes written after each write
  --write-mbps R  serve writes at R MB/s (10^6 bytes), reads at --read-mbps R:
  --read-mbps R   a card's sustained rates, one request at a time, for the
                  benchmark against the physical limit (bench/card.sh)
  --sparse        keep only written 1 MiB blocks in memory (large cards)

Needs Debian's python3-fusepy (module `fusepy`). Runs in the foreground until
unmounted (`fusermount -u MOUNTPOINT`).
"""
import argparse
import errno
import os
import stat
import time

import fusepy as fuse


# The last stretch of a throttled request is waited for by spinning (seconds).
SPIN = 0.0005


class Throttle:
    """A single-queue device: each request ends n / rate seconds after the later
    of its arrival and the end of the one before. The card works while this
    process copies the bytes, so that copy does not add to the card's time."""

    def __init__(self, mbps):
        self.rate = mbps * 1e6 if mbps else None
        self.busy_until = 0.0

    def take(self, n, arrived):
        if not self.rate:
            return
        self.busy_until = max(arrived, self.busy_until) + n / self.rate
        # time.sleep wakes up late by up to a few hundred microseconds, which
        # would leave the card idle before the next request: sleep short, then spin.
        now = time.monotonic()
        if self.busy_until - now > SPIN:
            time.sleep(self.busy_until - now - SPIN)
        while time.monotonic() < self.busy_until:
            pass


class SparseStore:
    """Bytes in 1 MiB blocks, allocated when first written (reads of the rest are zeros)."""

    BLOCK = 1 << 20

    def __init__(self, size):
        self.size = size
        self.blocks = {}

    def __getitem__(self, sl):
        out = bytearray()
        pos = sl.start
        while pos < sl.stop:
            b, at = divmod(pos, self.BLOCK)
            n = min(sl.stop - pos, self.BLOCK - at)
            block = self.blocks.get(b)
            out += block[at:at + n] if block is not None else bytes(n)
            pos += n
        return out

    def __setitem__(self, sl, data):
        pos, rel = sl.start, 0
        while pos < sl.stop:
            b, at = divmod(pos, self.BLOCK)
            n = min(sl.stop - pos, self.BLOCK - at)
            block = self.blocks.get(b)
            if block is None:
                block = self.blocks[b] = bytearray(self.BLOCK)
            block[at:at + n] = data[rel:rel + n]
            pos += n
            rel += n


class Card(fuse.Operations):
    def __init__(self, size, real, eio_at, delay, log, write_mbps=None, read_mbps=None,
                 sparse=False, eio_arm=None):
        self.size = size
        self.real = real
        self.data = SparseStore(real) if sparse else bytearray(real)
        self.eio_at = eio_at
        self.eio_arm = eio_arm
        self.delay = delay
        self.log = log
        self.written = 0
        self.write_throttle = Throttle(write_mbps)
        self.read_throttle = Throttle(read_mbps)

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
        arrived = time.monotonic()
        out = bytearray()
        for _, at, n in self._spans(offset, size):
            out += self.data[at:at + n]
        self.read_throttle.take(len(out), arrived)
        return bytes(out)

    def write(self, path, buf, offset, fh):
        arrived = time.monotonic()
        if (self.eio_at is not None and offset <= self.eio_at < offset + len(buf)
                and (self.eio_arm is None or os.path.exists(self.eio_arm))):
            raise fuse.FuseOSError(errno.EIO)
        for rel, at, n in self._spans(offset, len(buf)):
            self.data[at:at + n] = buf[rel:rel + n]
        self.written += len(buf)
        self.write_throttle.take(len(buf), arrived)
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
    p.add_argument("--eio-arm")
    p.add_argument("--delay-ms", type=int, default=0)
    p.add_argument("--log")
    p.add_argument("--write-mbps", type=float)
    p.add_argument("--read-mbps", type=float)
    p.add_argument("--sparse", action="store_true")
    a = p.parse_args()
    card = Card(a.size, a.real_size or a.size, a.eio_at, a.delay_ms, a.log,
                a.write_mbps, a.read_mbps, a.sparse, a.eio_arm)
    fuse.FUSE(card, a.mountpoint, foreground=True, nothreads=True, direct_io=True,
              big_writes=True, max_write=131072, max_read=131072)


if __name__ == "__main__":
    main()
