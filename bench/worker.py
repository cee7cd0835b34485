"""One measurement batch in a fresh interpreter: ``worker.py SCENARIO VARIANT [options]``.

The harness (run.py) starts this once per variant, scenario and round, with the
interpreter of the variant's venv, and reads the single JSON line it prints last.
A fresh process per batch keeps imports, pools and heap state from leaking between
variants. Every loop is bounded by a count and a time limit.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import sys
import threading
import time
import traceback
from typing import Any

from variants import CAPSULE_ID, VARIANTS, Variant


def _check_one(model: Any) -> None:
    if model.id != CAPSULE_ID:
        raise RuntimeError(f"wrong capsule decoded: {model.id!r}")


# --- sequential GET / POST -------------------------------------------------------------
# Each scenario has a sync and an async form with the same body; the async form runs
# inside the event loop that also creates and closes the client.


def _seq_call(client: Any, kind: str) -> Any:
    return (lambda: client.get(CAPSULE_ID)) if kind == "get" else client.create


def seq(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Back-to-back calls on one connection: throughput and client CPU per call."""
    call, count = _seq_call(client, p["kind"]), p["count"]
    for _ in range(max(20, count // 20)):  # warm-up: connection, caches
        _check_one(call())
    done = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop = t0 + p["seconds"]
    while done < count:
        call()
        done += 1
        if not done % 64 and time.perf_counter() > stop:
            break
    return _rate(done, time.perf_counter() - t0, time.process_time() - cpu0)


async def aseq(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    call, count = _seq_call(client, p["kind"]), p["count"]
    for _ in range(max(20, count // 20)):
        _check_one(await call())
    done = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    stop = t0 + p["seconds"]
    while done < count:
        await call()
        done += 1
        if not done % 64 and time.perf_counter() > stop:
            break
    return _rate(done, time.perf_counter() - t0, time.process_time() - cpu0)


def _rate(done: int, wall: float, cpu: float) -> dict[str, Any]:
    return {"n": done, "wall_s": wall, "rps": done / wall, "cpu_us": cpu / done * 1e6}


# --- list end to end ----------------------------------------------------------------------


def _check_list(models: Any, size: int) -> None:
    if len(models) != size:
        raise RuntimeError(f"listed {len(models)} capsules, expected {size}")


def list_e2e(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Whole ``capsules.list()`` calls: request, body transfer and decode."""
    size, samples, cpu = p["size"], [], []
    _check_list(client.list(), size)  # warm-up: connection, decoder, first-call caches
    stop = time.perf_counter() + p["seconds"]
    while len(samples) < p["reps"] and (not samples or time.perf_counter() < stop):
        c0, t0 = time.process_time(), time.perf_counter()
        models = client.list()
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        _check_list(models, size)
        del models
    return _ms(samples, cpu)


async def alist_e2e(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    size, samples, cpu = p["size"], [], []
    _check_list(await client.list(), size)
    stop = time.perf_counter() + p["seconds"]
    while len(samples) < p["reps"] and (not samples or time.perf_counter() < stop):
        c0, t0 = time.process_time(), time.perf_counter()
        models = await client.list()
        samples.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        _check_list(models, size)
        del models
    return _ms(samples, cpu)


def _ms(samples: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    out = {"ms": statistics.median(samples) * 1e3, "samples_ms": [s * 1e3 for s in samples]}
    if cpu:
        out["cpu_ms"] = statistics.median(cpu) * 1e3  # the client's own CPU, load-proof-ish
    return out


# --- decode alone ----------------------------------------------------------------------------


def _decoder(library: str) -> Any:
    """bytes -> list of models, exactly as each client turns a list body into models."""
    if library == "ours":
        from wrenn._models import capsule_list_decoder  # also where older trees keep it
        from wrenn._responses import RawResponse, decode

        headers = {"content-type": "application/json"}
        return lambda body: decode(capsule_list_decoder, RawResponse(200, headers, body))
    if library == "official":
        import json as _json

        from wrenn.models import Capsule

        # handle_response() -> resp.json() (stdlib json), then one model_validate per item
        return lambda body: [Capsule.model_validate(item) for item in _json.loads(body)]
    if library == "httpx":
        from shapes import list_decoder

        return list_decoder.decode
    raise ValueError(f"no decoder for {library}")


def decode_only(variant: Variant, p: dict[str, Any]) -> dict[str, Any]:
    """Bytes already in memory to a list of models: the decoding cost alone."""
    from payloads import capsule_list

    size, reps = p["size"], p["reps"]
    body = capsule_list(size)
    decode = _decoder(variant.name.split("-")[0])
    if len(decode(body)) != size:
        raise RuntimeError("decoded the wrong number of capsules")
    samples: list[float] = []
    stop = time.perf_counter() + p["seconds"]
    while len(samples) < reps and (not samples or time.perf_counter() < stop):
        t0 = time.perf_counter()
        models = decode(body)
        samples.append(time.perf_counter() - t0)
        del models
    return _ms(samples)


# --- many concurrent GETs ---------------------------------------------------------------------


async def aconcurrent(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    """``count`` GETs started at once over the client's pool; first on a cold pool, then warm.

    A batch that has not completed within ``stall_s`` is a stall. Cancelling thousands
    of stuck requests can itself take many seconds, so a watchdog thread reports the
    stall and ends the process at once instead.
    """
    results: dict[str, Any] = {"cold": None, "warm": None}
    cold = await _batch(client, p["count"], p["stall_s"], results, "cold")
    results["cold"] = cold
    if p.get("warm", True):
        results["warm"] = await _batch(client, p["count"], p["stall_s"], results, "warm")
    # Bounded memory: the whole worker's peak, both batches and the interpreter included.
    results["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return results


async def _batch(
    client: Any, count: int, stall_s: float, results: dict[str, Any], label: str
) -> dict[str, Any]:
    import anyio

    progress = {"done": 0, "failed": 0}
    errors: dict[str, int] = {}

    async def one() -> None:
        try:
            _check_one(await client.get(CAPSULE_ID))
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            progress["failed"] += 1
        progress["done"] += 1

    def stalled() -> None:
        results[label] = {
            "seconds": stall_s,
            "rps": (progress["done"] - progress["failed"]) / stall_s,
            "done": progress["done"],
            "errors": dict(errors),
            "stalled": True,
        }
        print(json.dumps({"ok": True, **results}), flush=True)
        os._exit(0)

    watchdog = threading.Timer(stall_s, stalled)
    watchdog.daemon = True
    t0 = time.perf_counter()
    watchdog.start()
    async with anyio.create_task_group() as tg:
        for _ in range(count):
            tg.start_soon(one)
    wall = time.perf_counter() - t0
    watchdog.cancel()
    return {
        "seconds": wall,
        "rps": (progress["done"] - progress["failed"]) / wall,
        "done": progress["done"],
        "errors": errors,
        "stalled": False,
    }


# --- peak RSS while listing --------------------------------------------------------------------


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def peak_rss(client: Any, p: dict[str, Any]) -> dict[str, Any]:
    """Growth of the peak resident set from a warmed client to the end of one big list."""
    _check_one(client.get(CAPSULE_ID))  # imports, connection and decoders are in place
    gc.collect()
    before = _rss_kb()
    models = client.list()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    _check_list(models, p["size"])
    held = _rss_kb()
    return {
        "before_mb": before / 1024,
        "peak_mb": peak / 1024,
        "growth_mb": (peak - before) / 1024,
        "held_mb": held / 1024,
    }


# --- plumbing -------------------------------------------------------------------------------------


SYNC = {"seq": seq, "list": list_e2e, "rss": peak_rss}
ASYNC = {"seq": aseq, "list": alist_e2e, "concurrent": aconcurrent}


def run(args: argparse.Namespace) -> dict[str, Any]:
    variant = VARIANTS[args.variant]
    p = json.loads(args.params)
    if args.scenario == "decode":
        return decode_only(variant, p)
    # The list size rides in the base URL path (see server.py).
    base_url = args.base_url + (f"/l{p['size']}" if "size" in p else "")
    pool = p.get("pool", 100)
    if not variant.is_async:
        client = variant.make(base_url, args.api_key, pool)
        try:
            return SYNC[args.scenario](client, p)  # type: ignore[no-any-return]
        finally:
            client.close()

    async def main() -> dict[str, Any]:
        client = variant.make(base_url, args.api_key, pool)
        try:
            return await ASYNC[args.scenario](client, p)  # type: ignore[no-any-return]
        finally:
            await client.close()

    import anyio

    return anyio.run(main, backend=variant.mode)  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    parser.add_argument("variant", choices=sorted(VARIANTS))
    parser.add_argument("--base-url", default="")
    parser.add_argument("--api-key", default="wrn_" + "0" * 32)
    parser.add_argument("--params", default="{}")
    args = parser.parse_args()
    try:
        result: dict[str, Any] = {"ok": True, **run(args)}
    except BaseException as exc:  # reported to the harness, never a hang
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        traceback.print_exc(file=sys.stderr)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
