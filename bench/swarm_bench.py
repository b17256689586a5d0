#!/usr/bin/env python3
"""The network runtime under load: one `ftte serve` and 1,000 concurrent devices on loopback.

Runs named workloads, each a fresh server process plus one ftte_swarm process (many devices,
one gRPC connection each, submitting valid updates as fast as the server takes them), and
reports updates aggregated per second, p50/p99 submit and get-work latency, and the server's
peak memory (VmHWM of its process). Writes bench/results/swarm.{md,json}.

    python3 bench/swarm_bench.py [--build build/release] [--clients 1000] [--seconds 30]
"""
import argparse
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent

CONFIG = """
[server]
address = "127.0.0.1:0"
port_file = "{dir}/port"
state_dir = "{dir}/state"
insecure = true
fsync = {fsync}
[auth]
enroll_key = "bench"
[model]
name = "{model}"
mask = "{mask}"
{budget}
[strategy]
algorithm = "{algorithm}"
concurrency = {clients}
buffer = {buffer}
[client]
local_steps = 1
frozen = "{frozen}"
[eval]
every = 1000000000
samples = 256
"""

WORKLOADS = [
    # name, model, algorithm, mask, budget, buffer, fsync, think_ms (a device's "training" time)
    ("ftte-cnn-8MiB", "cnn", "ftte", "budget", "8MiB", 10, True, 0),
    ("ftte-cnn-8MiB-nofsync", "cnn", "ftte", "budget", "8MiB", 10, False, 0),
    ("ftte-cnn-8MiB-train2s", "cnn", "ftte", "budget", "8MiB", 10, True, 2000),
    ("fedbuff-mlp-dense", "mlp", "fedbuff", "full", "", 10, True, 0),
]


def rss_kib(pid, field):
    """VmHWM (peak) or VmRSS (now) of a process, in KiB."""
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def run(build, name, model, algorithm, mask, budget, buffer, fsync, think_ms, clients, seconds):
    d = tempfile.mkdtemp(prefix="ftte_swarm_")
    cfg = pathlib.Path(d) / "serve.toml"
    cfg.write_text(CONFIG.format(dir=d, fsync="true" if fsync else "false", model=model,
                                 mask=mask, budget=f'budget = "{budget}"' if budget else "",
                                 algorithm=algorithm, clients=clients, buffer=buffer,
                                 frozen="int8" if mask == "budget" else "float32"))
    log = open(pathlib.Path(d) / "server.log", "w")
    server = subprocess.Popen([str(build / "ftte"), "serve", "--config", str(cfg), "--linger", "0"],
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        port_file = pathlib.Path(d) / "port"
        for _ in range(600):
            if port_file.exists():
                break
            time.sleep(0.1)
        port = port_file.read_text().strip()
        print(f"swarm_bench: {name}: {clients} devices for {seconds} s ...", file=sys.stderr)
        out = subprocess.run([str(build / "ftte_swarm"), "--server", f"127.0.0.1:{port}",
                              "--enroll-key", "bench", "--clients", str(clients), "--seconds",
                              str(seconds), "--think-ms", str(think_ms)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        result["server_peak_rss_mib"] = round(rss_kib(server.pid, "VmHWM") / 1024, 1)
        result["server_rss_end_mib"] = round(rss_kib(server.pid, "VmRSS") / 1024, 1)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(d, ignore_errors=True)
    result.update(name=name, model=model, algorithm=algorithm, mask=mask, budget=budget,
                  buffer=buffer, fsync=fsync, think_ms=think_ms)
    result["aggregations_per_s"] = round(result["versions"] / result["seconds"], 2)
    print(f"swarm_bench: {name}: {result['updates_per_s']} updates/s, submit p50 "
          f"{result['submit_ms_p50']} ms p99 {result['submit_ms_p99']} ms, server peak "
          f"{result['server_peak_rss_mib']} MiB", file=sys.stderr)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=str(ROOT / "build/release"))
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--only", default="", help="comma-separated workload names")
    ap.add_argument("--out", default=str(ROOT / "bench/results"))
    a = ap.parse_args()
    build = pathlib.Path(a.build)
    for exe in ("ftte", "ftte_swarm"):
        if not (build / exe).exists():
            sys.exit(f"swarm_bench: {build / exe} is missing; build first: "
                     "cmake --preset release && cmake --build build/release")
    only = set(filter(None, a.only.split(",")))
    results = [run(build, *w, a.clients, a.seconds) for w in WORKLOADS if not only or w[0] in only]
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "clients": a.clients, "seconds": a.seconds,
            "command": "python3 bench/swarm_bench.py " + " ".join(sys.argv[1:])}
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "swarm.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        "# Network runtime under load (bench/swarm_bench.py)", "",
        f"One `ftte serve` process and one `ftte_swarm` process with {a.clients} devices on loopback "
        f"(one gRPC connection each; each device downloads the model once before the clock starts, "
        f"at most 32 at a time, "
        f"then loops get-work → submit a valid update, no local training, so the server is what is "
        f"measured), {a.seconds:g} s per workload, {meta['cpus']} CPUs shared by server and swarm. "
        f"Measured {meta['date']} with `{meta['command']}`.", "",
        "| workload | updates/s | aggregations/s | submit p50 / p99 ms | get-work p50 / p99 ms | "
        "bytes/update | stale refused | errors | server peak RSS | server RSS at end |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['name']} | {r['updates_per_s']:.0f} | {r['aggregations_per_s']:.1f} | "
            f"{r['submit_ms_p50']:.1f} / {r['submit_ms_p99']:.1f} | {r['getwork_ms_p50']:.1f} / "
            f"{r['getwork_ms_p99']:.1f} | {r['bytes_per_update']:,.0f} | {r['refused_stale']} | "
            f"{r['errors']} | {r['server_peak_rss_mib']} MiB | {r['server_rss_end_mib']} MiB |")
    lines += ["", "Rows without a training time are saturation tests: every device asks again the moment "
              "it is answered, so latency is queueing (1,000 outstanding calls / throughput). "
              "`train2s`: each device spends 2 s between getting work and submitting, as a phone "
              "training would, which offers about 500 updates/s. fsync = true (all but `nofsync`): "
              "every accepted update is on disk (fdatasync of the write-ahead log, group commit) "
              "before the device gets its acknowledgement. ftte-cnn: FTTE's 8 MiB subset of the "
              "cnn (37,706 values); fedbuff-mlp-dense: every value of the mlp (199,210).", ""]
    (out / "swarm.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
