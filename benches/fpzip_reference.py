#!/usr/bin/env python3
"""The reference library's fpzip decode speed, the yardstick for drawdrop's own decoder:

    pip install fpzip==1.2.5 numpy
    python3 benches/fpzip_reference.py [--size 1024] [--seconds 3]
    cargo run --release --example fpzip-speed -- [--size 1024] [--seconds 3]

Both build the same picture: a 1 x size x size x 3 image of f16-exact values in [-1, 1] (byte
b as (b - 128) / 128), smooth shapes with a little noise, made from integers only so the two
languages agree exactly; it is compressed as Draw Things compresses f16 tensors (widened to
f32, precision 19, nx = C, ny = W, nz = H). Both print the stream's size and CRC-32 (equal when
the encoders agree) and the decode speed in MB/s of decoded f32 (10^6 bytes per second), of the
best run (the least disturbed by other work on the machine) and the mean.
"""
import argparse
import time
import zlib

import fpzip
import numpy as np


def picture(size):
    y, x, c = np.meshgrid(
        np.arange(size, dtype=np.uint32),
        np.arange(size, dtype=np.uint32),
        np.arange(3, dtype=np.uint32),
        indexing="ij",
    )
    tri1 = np.abs(((x * (c + 1) + 2 * y) % 512).astype(np.int64) - 256)
    tri2 = np.abs(((x + (3 - c) * y) % 384).astype(np.int64) - 192)
    h = (x * np.uint32(73856093)) ^ (y * np.uint32(19349663)) ^ (c * np.uint32(83492791))
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    noise = (h % np.uint32(9)).astype(np.int64) - 4
    b = np.clip(tri1 // 2 + tri2 // 2 + 16 + noise, 0, 255)
    return ((b.astype(np.float32) - 128.0) / 128.0)[np.newaxis]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    values = np.ascontiguousarray(picture(args.size), dtype=np.float32)
    assert np.array_equal(values.astype(np.float16).astype(np.float32), values)
    stream = fpzip.compress(values, precision=19, order="C")
    print(f"stream: {len(stream)} bytes, crc32 {zlib.crc32(stream):08x}")
    fpzip.decompress(stream, order="C")  # warm up
    times = []
    cpu_started = time.thread_time()
    started = time.perf_counter()
    while not times or time.perf_counter() - started < args.seconds:
        run = time.perf_counter()
        back = fpzip.decompress(stream, order="C")
        times.append(time.perf_counter() - run)
    cpu = time.thread_time() - cpu_started
    assert back.tobytes() == values.tobytes()
    megabytes = values.nbytes / 1e6
    mean = sum(times) / len(times)
    print(
        f"reference fpzip decode: {megabytes / min(times):.1f} MB/s best, "
        f"{megabytes / mean:.1f} MB/s mean, {megabytes * len(times) / cpu:.1f} MB/s of CPU time "
        f"({min(times) * 1000:.1f} ms best per {args.size}x{args.size}x3 f32 image, "
        f"{len(times)} runs)"
    )


if __name__ == "__main__":
    main()
