"""Run the benchmarks and write bench/RESULTS.md.

    python bench/run.py            # full run, a few minutes (what ``nox -s bench`` runs)
    python bench/run.py --quick    # about a minute or two, for development
    python bench/run.py --only get,list-10000 --rounds 3

Needs the official SDK in its own venv at bench/.venv-official (``nox -s bench``
creates it). The loopback server and every client batch run in their own processes;
each round runs every variant once per scenario, in a shuffled order.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from plan import IMPORTS, Plan, Scenario, metric_of, scenarios

HERE = Path(__file__).resolve().parent
OFFICIAL_VENV = HERE / ".venv-official"
OURS_MIN_VENV = HERE / ".venv-ours-min"
API_KEY = "wrn_" + "0123456789abcdef" * 2
SETUP_HINT = (
    "create it with `nox -s bench`, or by hand: python3 -m venv bench/.venv-official && "
    "bench/.venv-official/bin/pip install --ignore-requires-python wrenn==0.3.0 'trio>=0.27'"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class LoopbackServer:
    """server.py in its own process; always stopped on exit, and it stops by itself if we die."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> LoopbackServer:
        self.proc = subprocess.Popen(
            [self.python, str(HERE / "server.py"), "--list-sizes", "1000,10000"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=HERE,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=30):
                self.__exit__()
                raise RuntimeError("the loopback server did not start within 30 s")
        self.port = json.loads(self.proc.stdout.readline())["port"]
        return self

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_json(cmd: list[str], timeout: float, cwd: Path = HERE) -> dict[str, Any]:
    """Run a command that prints one JSON line last; a timeout or crash becomes a failure."""
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no answer within {timeout:g} s (killed)"}
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    try:
        return json.loads(lines[-1])  # type: ignore[no-any-return]
    except (IndexError, json.JSONDecodeError):
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        return {"ok": False, "error": f"exit {done.returncode}: {' | '.join(tail)}"[:500]}


def summary(result: dict[str, Any], sc: Scenario) -> str:
    value = metric_of(result, sc.metric)
    if value is None:
        return "FAILED " + str(result.get("error", ""))[:120]
    note = ""
    if sc.worker == "concurrent" and (result.get("cold") or {}).get("stalled"):
        note = f" STALLED ({result['cold']['done']} done)"
    return f"{report.fmt(value)} {sc.unit}{note}"


def python_for(variant_venv: str, ours: str, official: str, ours_min: str | None = None) -> str:
    if variant_venv == "official":
        return official
    if variant_venv == "ours-min" and ours_min:
        return ours_min
    return ours


def run_scenarios(
    plan: Plan, scs: list[Scenario], server: LoopbackServer, ours: str, official: str
) -> report.Results:
    from variants import VARIANTS

    results: report.Results = {sc.key: {v: [] for v in sc.variants} for sc in scs}
    for rnd in range(plan.rounds):
        started = time.monotonic()
        for sc in scs:
            if sc.rounds is not None and rnd >= sc.rounds:
                continue
            order = list(sc.variants)
            random.shuffle(order)
            for name in order:
                python = python_for(VARIANTS[name].venv, ours, official)
                cmd = [
                    python,
                    str(HERE / "worker.py"),
                    sc.worker,
                    name,
                    "--base-url",
                    server.base_url,
                    "--api-key",
                    API_KEY,
                    "--params",
                    json.dumps(sc.params),
                ]
                result = run_json(cmd, sc.timeout_s)
                results[sc.key][name].append(result)
                log(f"  round {rnd + 1} {sc.key:<22} {name:<17} {summary(result, sc)}")
        log(f"round {rnd + 1}/{plan.rounds} took {time.monotonic() - started:.0f} s")
    return results


def run_imports(plan: Plan, ours: str, official: str, ours_min: str) -> dict[str, list[float]]:
    """Median of fresh interpreters; the cwd is an empty directory so nothing local shadows."""
    samples: dict[str, list[float]] = {label: [] for label in IMPORTS}
    code = "import time; t = time.perf_counter(); {}; print(time.perf_counter() - t)"
    with tempfile.TemporaryDirectory() as empty:
        for _ in range(plan.import_samples):
            labels = list(IMPORTS)
            random.shuffle(labels)
            for label in labels:
                venv, statement = IMPORTS[label]
                cmd = [python_for(venv, ours, official, ours_min), "-c", code.format(statement)]
                try:
                    out = subprocess.run(
                        cmd, capture_output=True, timeout=30, cwd=empty, check=True
                    )
                    samples[label].append(float(out.stdout) * 1e3)
                except (subprocess.SubprocessError, ValueError) as exc:
                    log(f"  import {label}: {exc}")
    for label, xs in samples.items():
        log(f"  import {label:<40} {report.fmt(statistics.median(xs)) if xs else '—'} ms")
    return samples


def versions(python: str, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        f"out = {{'python': sys.version.split()[0]}}\n"
        f"for n in {names!r}:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = 'missing'\n"
        "print(json.dumps(out))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, timeout=30, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                cwd=HERE,
                timeout=10,
                check=True,
            )
            .stdout.decode()
            .strip()
        )
        # read-only: does the measured SDK differ from that commit?
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "../src"],
            capture_output=True,
            cwd=HERE,
            timeout=10,
            check=True,
        ).stdout.strip()
        if dirty:
            commit += " + uncommitted changes under src/"
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "os": f"{platform.system()} {platform.release()}",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "commit": commit,
    }


def write_markdown(
    path: Path,
    plan: Plan,
    scs: list[Scenario],
    results: report.Results,
    imports: dict[str, list[float]],
    local: dict[str, Any] | None,
    meta: dict[str, Any],
    argv: list[str],
) -> None:
    by_key = {sc.key: sc for sc in scs}
    m = meta["machine"]
    lines = [
        "# wrenn benchmarks",
        "",
        f"Generated {meta['finished']} UTC by `{' '.join(['python', 'bench/run.py', *argv])}` "
        f"({'quick' if plan.quick else 'full'} mode, {plan.rounds} rounds, {meta['elapsed_s']:.0f} s). "
        "Rerun everything with `nox -s bench` (or `nox -s bench -- --quick`).",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['os']}. Load average at start "
        f"{meta['load_start']}, at end {m['load']}: **a shared machine, other work was running**; "
        "read paired ratios rather than absolute numbers.",
        f"- Ours: wrenn {meta['ours']['wrenn']} (commit {m['commit']}) on Python {meta['ours']['python']}, "
        + ", ".join(f"{k} {v}" for k, v in meta["ours"].items() if k not in ("wrenn", "python")),
        f"- Official: wrenn {meta['official']['wrenn']} on Python {meta['official']['python']} "
        "(installed with `--ignore-requires-python` in bench/.venv-official), "
        + ", ".join(
            f"{k} {v}" for k, v in meta["official"].items() if k not in ("wrenn", "python")
        ),
        "- Cold imports run in "
        + (
            "bench/.venv-ours-min (only `pip install -e .`, as a user installs it) for ours and the baseline"
            if "ours-min" in meta.get("ours_min_python", "")
            else "the dev venv (bench/.venv-ours-min was missing)"
        )
        + "; the official SDK in its venv.",
        "- Server: bench/server.py, a loopback HTTP/1.1 server in its own process answering with "
        "pre-encoded Wrenn JSON (capsules as control plane v0.1.5 encodes them; 10,000 capsules = "
        f"{meta['list_bytes']:,} bytes).",
        "- Method: every number comes from a fresh worker process; each round runs every variant "
        "of a scenario once, in a shuffled order. Medians and min–max are over rounds. "
        '"ours ÷ it" is the per-round ratio of our SDK (same concurrency mode) to that variant, '
        "oriented so that **> 1 means ours is better** (faster, more req/s, less memory).",
        "- Variants: `ours-*` this SDK; `official-*` wrenn 0.3.0; `httpx-*` raw httpx + msgspec "
        "decoding into a typed Struct; `floor-*` a raw-socket client (bench/floor.py), the "
        "lowest cost reachable. Pools: ours and httpx get `httpx.Limits(100, 100)`; official has "
        "no pool option and uses httpx's defaults (100 connections, 20 kept alive).",
        "",
        "## Targets",
        "",
        *report.targets_table(report.targets(results, by_key, imports, local)),
        "",
        "## Results",
        "",
    ]
    for sc in scs:
        lines += [*report.scenario_table(results, sc), ""]
    lines += report.imports_table(imports) + report.local_table(local)
    path.write_text("\n".join(lines).rstrip() + "\n")


def rewrite(raw: Path, out: Path) -> None:
    """Write the Markdown again from a run's raw JSON (after a change to the report only)."""
    data = json.loads(raw.read_text())
    meta = data["meta"]
    saved = meta.get("plan", {"quick": False, "rounds": 5, "argv": []})
    plan = Plan.make(saved["quick"], saved["rounds"])
    scs = [sc for sc in scenarios(plan.quick) if sc.key in data["results"]]
    write_markdown(
        out, plan, scs, data["results"], data["imports"], data["local"], meta, saved["argv"]
    )
    log(f"wrote {out} from {raw}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the wrenn benchmarks.")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples (~1-2 min)")
    parser.add_argument("--rounds", type=int, help="rounds of the request scenarios")
    parser.add_argument("--only", help="comma-separated scenario keys, or 'import', 'local'")
    parser.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--from-json", type=Path, help="rewrite --out from a saved raw run")
    parser.add_argument("--official-python", default=str(OFFICIAL_VENV / "bin" / "python"))
    parser.add_argument(
        "--ours-min-python",
        default=str(OURS_MIN_VENV / "bin" / "python"),
        help="a venv with only `pip install -e .`, for cold imports",
    )
    parser.add_argument(
        "--ours-python",
        default=sys.executable,
        help="the interpreter of our variants (and raw httpx's): e.g. a wrapper script that "
        "puts another build of src/ first on PYTHONPATH, to measure before and after a change",
    )
    args = parser.parse_args()

    if args.from_json:
        rewrite(args.from_json, args.out)
        return
    plan = Plan.make(args.quick, args.rounds)
    ours, official = args.ours_python, args.official_python
    if not Path(official).exists():
        sys.exit(f"the official SDK venv is missing ({official}); {SETUP_HINT}")
    only = set(args.only.split(",")) if args.only else None
    scs = [sc for sc in scenarios(args.quick) if only is None or sc.key in only]

    t0 = time.monotonic()
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta: dict[str, Any] = {
        "load_start": load_start,
        "ours": versions(ours, ["wrenn", "httpx", "httpcore", "h11", "msgspec", "anyio", "trio"]),
        "official": versions(
            official, ["wrenn", "httpx", "httpcore", "pydantic", "pydantic-core", "anyio", "trio"]
        ),
    }
    if meta["official"]["wrenn"] != "0.3.0":
        sys.exit(
            f"bench/.venv-official has wrenn {meta['official']['wrenn']}, not 0.3.0; {SETUP_HINT}"
        )
    sys.path.insert(0, str(HERE))
    from payloads import capsule_list

    meta["list_bytes"] = len(capsule_list(10000))
    log(f"{'quick' if plan.quick else 'full'} run: {plan.rounds} rounds, {len(scs)} scenarios")

    results: report.Results = {}
    if scs:
        with LoopbackServer(ours) as server:
            results = run_scenarios(plan, scs, server, ours, official)
    imports: dict[str, list[float]] = {}
    if only is None or "import" in only:
        ours_min = args.ours_min_python if Path(args.ours_min_python).exists() else ours
        if ours_min == ours:
            log(f"  {args.ours_min_python} is missing: timing our imports in the dev venv")
        meta["ours_min_python"] = ours_min
        imports = run_imports(plan, ours, official, ours_min)
    local = None
    if only is None or "local" in only:
        log("local server: create + first exec, then capsules alive at once")
        local = run_json(
            [
                ours,
                str(HERE / "local_bench.py"),
                "--creates",
                str(plan.local_creates),
                "--alive",
                str(plan.local_alive),
            ],
            timeout=300,
        )
        log(f"  {json.dumps({k: v for k, v in local.items() if k != 'create_exec_ms'})}")

    meta["plan"] = {"quick": plan.quick, "rounds": plan.rounds, "argv": sys.argv[1:]}
    meta["machine"] = machine()
    meta["finished"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
    meta["elapsed_s"] = time.monotonic() - t0
    raw = HERE / "_work"
    raw.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    (raw / f"results-{stamp}.json").write_text(
        json.dumps({"meta": meta, "results": results, "imports": imports, "local": local}, indent=1)
    )
    write_markdown(args.out, plan, scs, results, imports, local, meta, sys.argv[1:])
    log(f"wrote {args.out} (raw data in {raw}/results-{stamp}.json) in {meta['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
