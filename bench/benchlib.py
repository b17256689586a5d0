"""What the benchmark drivers share: running ftte for JSON, machine facts, table formatting."""
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The binary under study: build/release/ftte, or $FTTE (a copy kept apart while the tree rebuilds).
FTTE = os.environ.get("FTTE") or os.path.join(REPO, "build", "release", "ftte")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def require_ftte():
    if not os.access(FTTE, os.X_OK):
        sys.exit("error: ftte binary not found at %s\nbuild it with:\n"
                 "  cmake --preset release && cmake --build --preset release "
                 "--target ftte" % FTTE)


def run_json(cmd):
    """Run cmd; return the JSON object on the last non-empty stdout line."""
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.strip()]
    if p.returncode != 0 or not lines:
        sys.exit("error: command failed (exit %d): %s\n%s"
                 % (p.returncode, " ".join(cmd), p.stderr.strip()[-2000:]))
    return json.loads(lines[-1])


def simulate_results(cmd, out_dir):
    """Run an `ftte simulate ... --out out_dir` command; return its results.json."""
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("error: %s failed (exit %d):\n%s" % (" ".join(cmd), p.returncode,
                                                        p.stderr.strip()[-2000:]))
    with open(os.path.join(out_dir, "results.json")) as f:
        return json.load(f)


def add_study_args(ap, name):
    """The options every study driver shares: --set, --jobs, --threads, --name, --out,
    --no-micro."""
    ap.add_argument("--set", action="append", help="a setting for every run, as in simulate")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--name", default=name)
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "results"))
    ap.add_argument("--no-micro", action="store_true")


def parse_study_args(ap):
    """Parses, checks the shared options and that the ftte binary exists."""
    a = ap.parse_args()
    require_ftte()
    if a.jobs < 1 or a.threads < 1:
        sys.exit("error: --jobs and --threads must be >= 1")
    return a


def simulate_method(a, out_dir, method, sets, tag):
    """One method of a study: `ftte simulate` on a.config (a.seeds, a.threads, a.set and `sets`
    as --set), resumed, into out_dir; returns its results.json."""
    cmd = [FTTE, "simulate", "--config", a.config, "--out", out_dir, "--threads",
           str(a.threads), "--resume", "--methods", method]
    if a.seeds:
        cmd += ["--seeds", a.seeds]
    for s in list(a.set or []) + sets:
        cmd += ["--set", s]
    log("%s: %s" % (tag, os.path.relpath(out_dir, a.out)))
    return simulate_results(cmd, out_dir)


MICRO = os.path.join(REPO, "build", "release", "bench", "ftte_micro")


def run_micro(benchmark_filter, *args):
    """The benchmarks of build/release/bench/ftte_micro matching the filter (Google Benchmark's
    JSON entries), or exit naming how to build it."""
    if not os.access(MICRO, os.X_OK):
        sys.exit("error: %s not found; build it with: cmake --build --preset release "
                 "--target ftte_micro (or pass --no-micro)" % MICRO)
    p = subprocess.run([MICRO, "--benchmark_filter=" + benchmark_filter, "--benchmark_format=json"]
                       + list(args), cwd=REPO, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit("error: ftte_micro failed:\n" + p.stderr[-2000:])
    return json.loads(p.stdout)["benchmarks"]


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def machine_info():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f
                        if l.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
    except OSError:  # git not installed
        commit = ""
    return {"nproc": len(os.sched_getaffinity(0)), "cpu_model": cpu,
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "git_commit": commit or None, "platform": platform.platform(),
            "python": platform.python_version(), "loadavg_at_start": os.getloadavg()}


def mib(b):
    return "-" if b is None else "%.2f MiB" % (b / 2**20)


def num(x, fmt="%.1f"):
    return "-" if x is None else fmt % x


def ratio(a, b):
    return "-" if a is None or b in (None, 0) else "%.2fx" % (a / b)


def md_table(header, rows):
    line = lambda cells: "| " + " | ".join(str(c) for c in cells) + " |"
    return "\n".join([line(header), line("---:" for _ in header)] + [line(r) for r in rows])


# Student's t at 97.5% for n - 1 degrees of freedom (n seeds), for the 95% interval.
T975 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776, 6: 2.571, 7: 2.447, 8: 2.365, 9: 2.306,
        10: 2.262}


def late_accuracy(run, duration):
    """Mean accuracy over the evaluations in the last quarter of the horizon: one evaluation
    swings by 10-20 points in this setting (the clean run of seed 0 went 73.2% -> 67.2% -> 50.0%
    over its last three), so the final one alone cannot tell an attack from noise."""
    late = [p["accuracy"] for p in run["series"] if p["t"] >= 0.75 * duration - 1e-9]
    return sum(late) / len(late)


def mean_ci(values):
    """(mean, half-width of the 95% interval by Student's t; 0 for one value)"""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
    return mean, T975.get(n, 1.96) * sd / n ** 0.5
