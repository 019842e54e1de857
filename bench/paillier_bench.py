"""Benchmark Tandem's fast Paillier against plain phe in the same run.

Usage: python bench/paillier_bench.py [--bits 2048] [--n 10000] [--phe-n 200] [--decrypt-n 1000] [--json PATH]

Ours runs on the full ``--n`` elements (decryption on ``--decrypt-n``); plain phe runs on a sample of
``--phe-n`` elements and its per-operation rate is extrapolated linearly (each phe operation is
independent, so this is honest for encrypt/decrypt/add/multiply; the phe dot product is a sum of
products, also linear in the length). Rows marked ``*`` are extrapolated for phe.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols.crypto.paillier import (  # noqa: E402
    Decryptor,
    Encryptor,
    PackingScheme,
    ParallelPaillier,
    generate_keypair,
)
from protocols.crypto.paillier.codec import decode_vector, encode_vector  # noqa: E402

CLOCK: Callable[[], float] = time.perf_counter


def timed(fn: Callable[[], Any], clock: Callable[[], float] | None = None) -> tuple[float, Any]:
    clock = clock or CLOCK
    start = clock()
    out = fn()
    return clock() - start, out


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def bench(bits: int, n: int, phe_n: int, decrypt_n: int) -> dict[str, Any]:
    rng = np.random.default_rng(2024)
    x, y, k = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    res: dict[str, Any] = {"bits": bits, "n": n, "phe_sample": phe_n, "decrypt_n": decrypt_n, "cpus": os.cpu_count()}
    res["clock"] = "cpu" if CLOCK is time.process_time else "wall"
    res["load_average_1m"] = os.getloadavg()[0]
    keygen_s, (pub, priv) = timed(lambda: generate_keypair(bits, allow_insecure_test_key=bits < 2048))
    res["keygen_s"] = keygen_s
    flag = bits < 2048
    res["table_build_s"], enc = timed(lambda: Encryptor(pub, allow_insecure_test_key=flag))
    dec = Decryptor(priv, allow_insecure_test_key=flag)
    m = min(phe_n, n)

    # encrypt
    t, vx = timed(lambda: enc.encrypt_vector(x))
    res["encrypt_ours_per_s"] = rate(n, t)
    t, phe_x = timed(lambda: [pub.encrypt(float(v)) for v in x[:m]])
    res["encrypt_phe_per_s"] = rate(m, t)
    with ParallelPaillier(enc, dec, workers=os.cpu_count() or 2) as pool:
        pool.encrypt_vector(x[: pool.threshold])  # start workers and build their tables outside the timing
        t, _ = timed(lambda: pool.encrypt_vector(y), time.perf_counter)  # workers: wall clock always
        res["encrypt_parallel_ours_per_s"] = rate(n, t)
        t, _ = timed(lambda: pool.decrypt_vector(vx[:decrypt_n]), time.perf_counter)
        res["decrypt_parallel_ours_per_s"] = rate(min(n, decrypt_n), t)
    conservative = Encryptor(pub, exponent_bits=(bits + 1) // 2, allow_insecure_test_key=flag)
    cm = min(n, 1000)
    t, _ = timed(lambda: conservative.encrypt_vector(x[:cm]))
    res["encrypt_djn_half_bits_ours_per_s"] = rate(cm, t)
    vy = enc.encrypt_vector(y)

    # decrypt
    t, _ = timed(lambda: dec.decrypt_vector(vx[:decrypt_n]))
    res["decrypt_ours_per_s"] = rate(min(n, decrypt_n), t)
    t, _ = timed(lambda: [priv.decrypt(c) for c in phe_x])
    res["decrypt_phe_per_s"] = rate(m, t)

    # add (ciphertext + ciphertext); phe numbers carry per-value exponents, as phe.encrypt makes them
    phe_y = [pub.encrypt(float(v)) for v in y[:m]]
    t, _ = timed(lambda: vx + vy)
    res["add_ours_per_s"] = rate(n, t)
    t, _ = timed(lambda: [a + b for a, b in zip(phe_x, phe_y, strict=True)])
    res["add_phe_per_s"] = rate(m, t)

    # scalar multiply by a plaintext float vector
    t, _ = timed(lambda: vx * k)
    res["scalar_mul_ours_per_s"] = rate(n, t)
    t, _ = timed(lambda: [a * float(b) for a, b in zip(phe_x, k[:m], strict=True)])
    res["scalar_mul_phe_per_s"] = rate(m, t)

    # dot product of the whole encrypted vector with a plaintext column
    t, dot = timed(lambda: vx.dot(k))
    res["dot_ours_s"] = t
    t, _ = timed(lambda: sum((a * float(b) for a, b in zip(phe_x, k[:m], strict=True)), start=pub.encrypt(0)))
    res["dot_phe_s"] = t * n / m
    res["dot_max_abs_error"] = float(abs(dec.decrypt_vector(dot)[0] - float(k @ x)))

    # sum of the whole vector
    t, _ = timed(vx.sum)
    res["sum_ours_per_s"] = rate(n, t)
    t, _ = timed(lambda: sum(phe_x[1:], start=phe_x[0]))
    res["sum_phe_per_s"] = rate(m - 1, t)

    # wire codec (validation included: range check per ciphertext, one gcd per vector)
    t, data = timed(lambda: encode_vector(vx))
    res["codec_encode_per_s"] = rate(n, t)
    t, _ = timed(lambda: decode_vector(data, pub))
    res["codec_decode_per_s"] = rate(n, t)
    res["codec_bytes"] = len(data)

    # packed gradient+hessian histogram sum: one ciphertext per row instead of two
    scheme = PackingScheme.create(pub, slots=2, max_abs=8.0, exponent=-8, max_summands=n)
    gh = np.stack([np.clip(x, -8, 8), np.clip(y * y, 0, 8)], axis=1)
    t, packed = timed(lambda: scheme.encrypt(enc, gh))
    res["packed_encrypt_values_per_s"] = rate(2 * n, t)
    t, total = timed(lambda: scheme.decrypt(dec, packed.sum(), summands=n))
    res["packed_sum_error"] = float(np.abs(total[0] - gh.sum(axis=0)).max())

    for op in ("encrypt", "decrypt", "add", "scalar_mul", "sum"):
        res[f"{op}_speedup"] = res[f"{op}_ours_per_s"] / res[f"{op}_phe_per_s"]
    res["dot_speedup"] = res["dot_phe_s"] / res["dot_ours_s"]
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res["peak_rss_children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return res


def print_table(res: dict[str, Any]) -> None:
    n = res["n"]
    print(
        f"Paillier {res['bits']}-bit, n={n}, phe sample={res['phe_sample']} (rates extrapolated), "
        f"cpus={res['cpus']}, clock={res['clock']}, load={res['load_average_1m']:.1f}"
    )
    print(f"{'op':<28}{'ours ops/s':>14}{'phe ops/s':>14}{'speedup':>10}")
    for op in ("encrypt", "decrypt", "add", "scalar_mul", "sum"):
        ours, phe_rate = res[f"{op}_ours_per_s"], res[f"{op}_phe_per_s"]
        print(f"{op + ' *':<28}{ours:>14.1f}{phe_rate:>14.1f}{res[op + '_speedup']:>9.1f}x")
    print(
        f"{f'dot {n} (1/s of whole dot) *':<28}{1 / res['dot_ours_s']:>14.3f}{1 / res['dot_phe_s']:>14.3f}"
        f"{res['dot_speedup']:>9.1f}x"
    )
    print(f"{'encrypt, process pool (wall)':<28}{res['encrypt_parallel_ours_per_s']:>14.1f}")
    print(f"{'decrypt, process pool (wall)':<28}{res['decrypt_parallel_ours_per_s']:>14.1f}")
    print(f"{'encrypt, DJN r of bits/2':<28}{res['encrypt_djn_half_bits_ours_per_s']:>14.1f}")
    print(f"{'packed g+h encrypt (values)':<28}{res['packed_encrypt_values_per_s']:>14.1f}")
    print(f"{'codec encode':<28}{res['codec_encode_per_s']:>14.1f}")
    print(f"{'codec decode + validate':<28}{res['codec_decode_per_s']:>14.1f}   ({res['codec_bytes']} bytes)")
    print(
        f"dot: ours {res['dot_ours_s']:.2f} s, phe {res['dot_phe_s']:.2f} s (extrapolated), "
        f"|error| {res['dot_max_abs_error']:.2e}; table build {res['table_build_s']:.3f} s"
    )
    print(
        f"peak RSS: {res['peak_rss_mb']:.0f} MiB (this process), {res['peak_rss_children_mb']:.0f} MiB (largest worker)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=2048)
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--phe-n", type=int, default=200)
    parser.add_argument("--decrypt-n", type=int, default=1000)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: time in-process ops by process CPU time (steadier on a shared machine); pool rows stay wall",
    )
    args = parser.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    res = bench(args.bits, args.n, args.phe_n, args.decrypt_n)
    print_table(res)
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
