#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Write the seed corpus of fuzz-api.c into tests/fuzz/corpus/.

Each seed is a short valid operation sequence in the harness's encoding
(see LLVMFuzzerTestOneInput in fuzz-api.c): one configuration byte, then
per operation an opcode byte and its argument bytes.  Rerun this after
changing the encoding:  python3 tests/fuzz/make-seeds.py
"""
import os
import struct

RAM_NEW, RAM_FREE, RECLAIM, OPEN, CLOSE, MMAP, MUNMAP, READ = 0, 1, 2, 3, 4, 5, 6, 7
WRITE, WRITE_PAGES, READ_MAP, PREFAULT, WRITEOUT, DISCARD = 9, 11, 12, 13, 14, 15
INVALIDATE, HANDLER, INJ_LOAD, INJ_OTHER, CHANGE, MISC = 16, 17, 18, 19, 20, 21
STORE_FREE = 23
S0, S1, S2, S3, S4, S5, S6 = range(7)   # S6: S5's internal source
OVERLAY = 4                      # open: flags selector
RW, RO = 0, 3                    # mmap: prot selector
COMMIT, STORE_ONLY, MARK_ONLY = 1, 5, 8   # writeout: flags selector
H_DEFAULT, H_RETRY, H_ZERO, H_RETRY_ZERO = 1, 2, 3, 4


def u16(v):
    return list(struct.pack('<H', v))


def u32(v):
    return list(struct.pack('<I', v))


def ram_new(r, sel): return [RAM_NEW, r, sel]          # sel 0: no limit, 1: 1 byte, 2: a page, 6: 8 pages
def ram_free(r): return [RAM_FREE, r]
def reclaim(r, amt): return [RECLAIM, r, amt]
def open_(h, r, s, flags=0, corrupt=0): return [OPEN, h, r, s, flags, corrupt]
def close(h): return [CLOSE, h]
def mmap(m, h, off, npages, prot=RW): return [MMAP, m, h, off & 31, npages - 1, prot]
def munmap(m, kind=0): return [MUNMAP, m, kind]
def read(m, page, off=0, ln=0x8000, nest=0): return [READ, m] + u32(page) + u16(off) + u16(ln) + [nest]
def write(m, page, off=0, ln=0x8000, seed=1, nest=0): return [WRITE, m] + u32(page) + u16(off) + u16(ln) + [seed, nest]
def write_pages(m, page, n, seed=1): return [WRITE_PAGES, m] + u32(page) + [n - 1, seed]
def read_map(m): return [READ_MAP, m]
def prefault(m, page, npages, write_, kind=0, off=0):
    return [PREFAULT, m, kind] + u32(page) + u16(off) + [npages - 1, write_]
def writeout(h, sel=COMMIT): return [WRITEOUT, h, sel]
def discard(h): return [DISCARD, h]
def invalidate(h, off, npages): return [INVALIDATE, h, off & 31, npages - 1]
def handler(h, mode): return [HANDLER, h, mode]
def inj_load(s, at, times, err=0): return [INJ_LOAD, s, at, times, err]
def inj_store(s, at, times, err=0): return [INJ_OTHER, s, 0, at, times, err]
def inj_begin(s, at, times, err=0): return [INJ_OTHER, s, 1, at, times, err]
def inj_commit(s, at, times, err=0): return [INJ_OTHER, s, 2, at, times, err]
def inj_base(s, at, times, err=0): return [INJ_OTHER, s, 3, at, times, err]
def change(b, blk): return [CHANGE, b, blk]
def misc(kind, arg=None): return [MISC, kind] + ([] if arg is None else [arg])
def store_free(s): return [STORE_FREE, s]               # a freed slot: vmp_store_free(NULL)
def off_special(i, minus=0): return [0xc0 | minus, i]   # special[i] - minus
def len_special(i): return [0xe0, i]                     # special[i]
def mmap_raw(m, h, off, ln, prot=RW): return [MMAP, m, h] + off + ln + [prot]


seeds = {
    'basic-changeset': [0x00] + ram_new(0, 0) + open_(0, 0, S0) + mmap(0, 0, 0, 4)
    + write(0, 1, 100, 200, 7) + read_map(0) + writeout(0, COMMIT) + write(0, 2)
    + discard(0) + read_map(0) + writeout(0, STORE_ONLY) + close(0) + munmap(0)
    + close(0) + ram_free(0),
    'overlay-file': [0x00] + ram_new(0, 6) + open_(0, 0, S3, OVERLAY) + mmap(0, 0, 2, 6)
    + write_pages(0, 1, 3, 5) + read_map(0) + open_(1, 0, S4) + mmap(1, 1, 0, 8, RO)
    + read_map(1) + writeout(0, COMMIT) + read_map(1) + invalidate(1, 0, 8) + read_map(1)
    + writeout(0, MARK_ONLY),
    'fault-errors': [0x00] + ram_new(1, 3) + open_(0, 1, S2) + handler(0, H_ZERO)
    + inj_load(S2, 0, 1, 0) + mmap(0, 0, 0, 4) + read(0, 0) + write(0, 1, 10, 10)
    + handler(0, H_RETRY) + inj_load(S2, 0, 1, 2) + read(0, 2) + handler(0, H_DEFAULT)
    + inj_load(S2, 0, 0, 1) + write(0, 3) + inj_load(S2, 0, 0, 0xff)
    + inj_store(S2, 1, 1, 3) + writeout(0, COMMIT) + read_map(0) + writeout(0, COMMIT),
    'memlimit-prefault': [0x03] + ram_new(0, 2) + open_(0, 0, S0) + mmap(0, 0, 0, 8)
    + prefault(0, 0, 4, 1) + read_map(0) + prefault(0, 4, 2, 0) + reclaim(0, 5)
    + writeout(0, COMMIT) + prefault(0, 0, 4, 1) + discard(0) + read_map(0),
    'two-handles-change': [0x05] + ram_new(0, 7) + ram_new(1, 0) + open_(0, 0, S3)
    + open_(1, 1, S3) + mmap(0, 0, 0, 4) + mmap(1, 1, 0, 4) + mmap(2, 0, 2, 4, RO)
    + read_map(0) + read_map(1) + write(1, 1) + writeout(1, COMMIT) + read_map(0)
    + change(3, 2) + read_map(2) + invalidate(0, 0, 8) + read_map(0) + munmap(1, 4)
    + munmap(1, 5) + munmap(1, 6) + munmap(1, 0) + close(1) + misc(0) + misc(1)
    + misc(2) + misc(3),
    'readonly-hooks': [0x01] + ram_new(0, 9) + open_(0, 0, S1) + open_(1, 0, S0)
    + mmap(0, 0, 3, 3) + mmap(1, 1, 0, 3) + write(0, 0) + writeout(0, COMMIT)
    + writeout(0, MARK_ONLY) + read_map(0) + inj_begin(S0, 0, 1) + write(1, 2)
    + writeout(1, COMMIT) + inj_commit(S0, 0, 1, 1) + writeout(1, COMMIT)
    + writeout(1, COMMIT) + open_(2, 0, S3, OVERLAY) + inj_base(S3, 0, 1)
    + open_(2, 0, S3, OVERLAY) + open_(2, 0, S2, 6) + open_(2, 0, S2, 0, 13),
    'huge-ranges': [0x00] + ram_new(0, 0) + open_(0, 0, S0) + open_(1, 0, S3, OVERLAY)
    + mmap_raw(0, 0, off_special(18), [7])            # pages 2^40-1 .. +8
    + mmap_raw(1, 1, off_special(23), [0])            # the last page of a 2^63 file
    + mmap_raw(2, 0, off_special(31, 3), [1])         # wraps: -EINVAL
    + mmap_raw(3, 1, [5], len_special(35))            # 2^30 pages (4 TiB)
    + read(0, 0x80000000 | 0x40000000) + write(1, 0) + read(1, 0)
    + write(3, 0x80000000 | 0x40000000) + read(3, 0x80000005)
    + [INVALIDATE, 0] + off_special(31) + len_special(31) + writeout(1, COMMIT)
    + read_map(1),
    'nested-store': [0x01] + ram_new(0, 3) + open_(0, 0, S5) + mmap(0, 0, 0, 8)
    + read_map(0) + prefault(0, 0, 4, 1) + inj_load(S6, 0, 1, 0) + handler(0, H_ZERO)
    + read(0, 6) + write(0, 7) + inj_load(S6, 1, 0, 3) + discard(0) + read_map(0)
    + writeout(0, COMMIT) + change(4, 3) + read_map(0) + invalidate(0, 0, 8) + read_map(0),
    # stores freed with handles open and without, a slot made anew and
    # opened again; the file ends after 16 blocks and grows
    'store-lifetime': [0x40] + ram_new(0, 0) + open_(0, 0, S3) + open_(1, 0, S3, OVERLAY)
    + store_free(S3) + mmap(0, 0, 0, 4) + write(0, 1) + writeout(0, COMMIT) + munmap(0)
    + close(0) + mmap(1, 1, 0, 4, RO) + read_map(1) + munmap(1) + close(1)
    + open_(0, 0, S3) + mmap(0, 0, 14, 4) + write_pages(0, 1, 2) + writeout(0, COMMIT)
    + read_map(0) + store_free(S0) + store_free(S0) + store_free(S6) + open_(1, 0, S5)
    + mmap(1, 1, 0, 8) + read_map(1) + misc(2),
}

here = os.path.dirname(os.path.abspath(__file__))
os.makedirs(os.path.join(here, 'corpus'), exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(here, 'corpus', name), 'wb') as f:
        f.write(bytes(data))
    print(f'{name}: {len(data)} bytes')
