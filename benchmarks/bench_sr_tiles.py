"""Peak memory and time of SRResNet (16 blocks, 4x) on one 2040x1356 HR image (DIV2K's size): whole, and in
tiles of several sizes with the exact overlap (the receptive radius, so the output is the same).

Each setting runs in a fresh process and reports the growth of its peak resident memory (ru_maxrss) over what
the process held after building the model and the input: what inference itself needed. On a GPU (--device cuda)
torch.cuda.max_memory_allocated is reported instead. The time ratio is against the whole-image pass.
Usage: python benchmarks/bench_sr_tiles.py [--device cuda] [--tiles 64,128,256]
"""

import argparse
import json
import resource
import subprocess
import sys
import time


def one(tile: int, device: str) -> dict:
    import torch

    from genlab.core import tiles
    from genlab.models.srgan import SRResNetGenerator

    torch.manual_seed(0)
    net = SRResNetGenerator(3, 4).to(device).eval()
    x = torch.rand(1, 3, 1356 // 4, 2040 // 4, device=device) * 2 - 1
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    start = time.perf_counter()
    with torch.no_grad():
        out = tiles.tiled(net, x, 4, tile if tile > 0 else None, net.receptive_radius)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
    result = {"tile": tile, "seconds": seconds, "peak_mib": peak / 1024, "shape": list(out.shape)}
    if device == "cuda":
        result["peak_mib"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiles", default="64,128,256")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.device)))
        return
    rows = []
    for tile in [0] + [int(t) for t in args.tiles.split(",")]:
        done = subprocess.run([sys.executable, __file__, "--one", str(tile), "--device", args.device],
                              capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    whole = rows[0]["seconds"]
    print(f"SRResNet x4 on a 2040x1356 output ({args.device}); overlap = receptive radius (tiled == whole)")
    print(f"{'tiles (LR px)':<16}{'peak memory (MiB)':>20}{'seconds':>10}{'time ratio':>12}")
    for row in rows:
        name = "whole image" if row["tile"] == 0 else str(row["tile"])
        print(f"{name:<16}{row['peak_mib']:>20.0f}{row['seconds']:>10.2f}{row['seconds'] / whole:>12.2f}")


if __name__ == "__main__":
    main()
