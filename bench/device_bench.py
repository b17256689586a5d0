#!/usr/bin/python3
"""What the device side costs an app: the portable GEMM against OpenBLAS, and library sizes.

  python3 bench/device_bench.py [--builds build/device,build/arm64] [--repetitions 3]
      [--out bench/results] [--no-micro] [--noblas-build build/noblas]

1. GEMM: `bench/ftte_micro --benchmark_filter=Gemm` (this machine, one thread) runs OpenBLAS
   (BM_Gemm) and ftte's portable blocked GEMM (BM_PortableGemm, the GEMM of builds without
   OpenBLAS such as the arm64 preset) on the shapes of the zoo's convolutional models; reported
   per shape: multiply-adds per second of each (median of the repetitions) and portable /
   OpenBLAS. The arm64 build's own speed is not measured: qemu-user's speed says nothing about
   a phone's.
   With --noblas-build DIR (a Release build configured with -DFTTE_WITH_OPENBLAS=OFF, its
   `ftte` target built), whole training steps too: `ftte train --model M --data fashion-mnist
   --limit 4000 --json` of build/release and of DIR, alternated, samples per second (median of
   the repetitions) and the ratio, per image model.
2. Size: for each build with libftte_device.so (presets device and arm64; FTTE_DEVICE_LIBRARY),
   its stripped size, its exported symbols, and the shared libraries it needs with their
   stripped sizes as installed here (what an app would also ship unless the system has them).
Writes <out>/device.json and <out>/device.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchlib import REPO, log, machine_info, md_table, run_micro

ELF_MACHINES = {"AArch64": ("arm64", "aarch64-linux-gnu-strip", "/usr/lib/aarch64-linux-gnu"),
                "Advanced Micro Devices X86-64": ("x86-64", "strip",
                                                  "/usr/lib/x86_64-linux-gnu")}


def gemm_ratios(repetitions):
    entries = run_micro("Gemm", "--benchmark_repetitions=%d" % repetitions,
                        "--benchmark_min_time=0.2")
    rates = {}
    for e in entries:
        if e.get("run_type") != "iteration":
            continue
        kind, _, shape = e["run_name"].partition("/")
        rates.setdefault(shape, {}).setdefault(kind, []).append(e["items_per_second"])
    rows = []
    for shape, r in rates.items():
        blas = statistics.median(r["BM_Gemm"])
        portable = statistics.median(r["BM_PortableGemm"])
        rows.append({"shape": shape, "openblas_madds_per_s": blas,
                     "portable_madds_per_s": portable, "portable_over_openblas": portable / blas})
    return rows


def training_ratios(noblas_build, repetitions):
    rows = []
    for model in ("lenet5", "cnn"):
        rates = {"openblas": [], "portable": []}
        accuracy = {}
        for _ in range(repetitions):
            for kind, build in (("openblas", "build/release"), ("portable", noblas_build)):
                out = subprocess.run(
                    [os.path.join(REPO, build, "ftte"), "train", "--model", model, "--data",
                     "fashion-mnist", "--limit", "4000", "--json"],
                    capture_output=True, text=True, check=True).stdout
                j = json.loads(out.strip().splitlines()[-1])
                rates[kind].append(j["samples_per_s"])
                accuracy[kind] = j["test_accuracy"]
        blas, portable = (statistics.median(rates[k]) for k in ("openblas", "portable"))
        rows.append({"model": model, "openblas_samples_per_s": blas,
                     "portable_samples_per_s": portable, "portable_over_openblas": portable / blas,
                     "openblas_test_accuracy": accuracy["openblas"],
                     "portable_test_accuracy": accuracy["portable"]})
        log("%s: portable / OpenBLAS %.2fx" % (model, portable / blas))
    return rows


def stripped_size(path, strip):
    with tempfile.NamedTemporaryFile() as tmp:
        subprocess.run([strip, "--strip-all", "-o", tmp.name, path], check=True)
        return os.path.getsize(tmp.name)


def readelf(*args):
    env = dict(os.environ, LC_ALL="C")
    return subprocess.run(["readelf"] + list(args), capture_output=True, text=True, check=True,
                          env=env).stdout


def library_size(build):
    lib = os.path.join(REPO, build, "src", "net", "libftte_device.so")
    if not os.path.exists(lib):
        log("skip %s: no libftte_device.so (build the preset first)" % build)
        return None
    machine = next(l.split(":", 1)[1].strip() for l in readelf("-h", lib).splitlines()
                   if l.strip().startswith("Machine:"))
    arch, strip, libdir = ELF_MACHINES[machine]
    needed = [l.split("[", 1)[1].rstrip("]") for l in readelf("-d", lib).splitlines()
              if "(NEEDED)" in l]
    exported = [l.split()[-1] for l in readelf("--dyn-syms", "-W", lib).splitlines()
                if len(l.split()) >= 8 and l.split()[4] == "GLOBAL" and l.split()[6] != "UND"]
    deps = []
    for name in needed:
        path = os.path.join(libdir, name)
        if not os.path.exists(path):
            path = os.path.join("/lib", os.path.basename(libdir), name)
        deps.append({"name": name, "stripped_bytes": stripped_size(path, strip)
                     if os.path.exists(path) else None})
    return {"build": build, "arch": arch, "stripped_bytes": stripped_size(lib, strip),
            "exported_symbols": len(exported), "needed": deps}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--builds", default="build/device,build/arm64")
    ap.add_argument("--repetitions", type=int, default=3)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--no-micro", action="store_true")
    ap.add_argument("--noblas-build", default="",
                    help="a build with -DFTTE_WITH_OPENBLAS=OFF: also compare training steps")
    a = ap.parse_args()
    if a.repetitions < 1:
        sys.exit("error: --repetitions must be >= 1")
    result = {"machine": machine_info(), "gemm": [] if a.no_micro else gemm_ratios(a.repetitions),
              "libraries": [s for s in (library_size(b) for b in a.builds.split(",")) if s],
              "training": training_ratios(a.noblas_build, a.repetitions) if a.noblas_build
              else []}
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "device.json"), "w") as f:
        json.dump(result, f, indent=1)
    md = ["# The device side: portable GEMM and library size", "",
          "`python3 bench/device_bench.py` at commit %s, %s, %d cores (%s)." % (
              result["machine"]["git_commit"], result["machine"]["cpu_model"],
              result["machine"]["nproc"], result["machine"]["date"]), ""]
    if result["gemm"]:
        g = result["gemm"]
        md += ["## GEMM without OpenBLAS (one thread, this machine)", "",
               "Multiply-adds per second, median of %d repetitions; shapes are "
               "`ta/tb/m/n/k` of the zoo's convolutional models (bench/kernels_micro.cc)."
               % a.repetitions, "",
               md_table(["shape", "OpenBLAS G/s", "portable G/s", "portable / OpenBLAS"],
                        [[r["shape"], "%.1f" % (r["openblas_madds_per_s"] / 1e9),
                          "%.1f" % (r["portable_madds_per_s"] / 1e9),
                          "%.2fx" % r["portable_over_openblas"]] for r in g]), "",
               "Geometric mean portable / OpenBLAS: %.2fx." % statistics.geometric_mean(
                   [r["portable_over_openblas"] for r in g]), ""]
    if result["training"]:
        md += ["## Training steps without OpenBLAS (one thread, this machine)", "",
               "`ftte train --model M --data fashion-mnist --limit 4000` (batch 32, full "
               "training), build/release vs `%s` (`-DFTTE_WITH_OPENBLAS=OFF`, same flags "
               "otherwise), alternated; samples per second, median of %d runs; test accuracy "
               "after the run (the same training; the sums round differently)."
               % (a.noblas_build, a.repetitions), "",
               md_table(["model", "OpenBLAS samples/s", "portable samples/s",
                         "portable / OpenBLAS", "test accuracy (OpenBLAS, portable)"],
                        [[r["model"], "%.0f" % r["openblas_samples_per_s"],
                          "%.0f" % r["portable_samples_per_s"],
                          "%.2fx" % r["portable_over_openblas"],
                          "%.4f, %.4f" % (r["openblas_test_accuracy"],
                                          r["portable_test_accuracy"])]
                         for r in result["training"]]), ""]
    for lib in result["libraries"]:
        deps = ", ".join("%s (%s)" % (d["name"], "%.2f MB" % (d["stripped_bytes"] / 1e6)
                                      if d["stripped_bytes"] else "?") for d in lib["needed"])
        md += ["## libftte_device.so, %s (`%s`)" % (lib["arch"], lib["build"]), "",
               "- stripped: **%.2f MB** (%d bytes; goal for arm64 without OpenBLAS: <= 3 MB), "
               "%d exported symbols (the C API)" % (lib["stripped_bytes"] / 1e6,
                                                     lib["stripped_bytes"],
                                                     lib["exported_symbols"]),
               "- needs (stripped sizes as installed here): " + deps, ""]
    with open(os.path.join(a.out, "device.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
