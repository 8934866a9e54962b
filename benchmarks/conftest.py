"""Benchmarks: each records spectra per second; a table (ours against the reference, side by
side, from the same run) is printed at the end for benchmarks/RESULTS.md. The ratio is our
rate over the reference's, on the same case. Response times (the web app's) are recorded with
``latency`` instead and printed as a second table: median and max against the goal."""

import os
import platform
from statistics import median

import jax
import pytest

_ROWS = []
_LATENCIES = []


@pytest.fixture
def record():
    """``record(benchmark, group, impl, batch)`` after ``benchmark(...)`` has run."""

    def add(benchmark, group, impl, batch):
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["spectra_per_s"] = batch / mean
        _ROWS.append((group, impl, batch, mean))

    return add


@pytest.fixture
def latency():
    """``latency(case, rows, seconds, goal=None)``: the response times (seconds, one per try)
    of ``case`` on a table of ``rows``, and its goal (seconds) if it has one."""

    def add(case, rows, seconds, goal=None):
        _LATENCIES.append((case, rows, list(seconds), goal))

    return add


def pytest_terminal_summary(terminalreporter):
    if _ROWS:
        _throughput(terminalreporter.write_line)
    if _LATENCIES:
        _latencies(terminalreporter.write_line)


def _latencies(write):
    write("")
    write(f"Response times ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)")
    write("| case | rows | tries | median | max | goal (every try under it) |")
    write("| --- | ---: | ---: | ---: | ---: | --- |")
    for case, rows, seconds, goal in _LATENCIES:
        verdict = "met" if goal is not None and max(seconds) < goal else "not met"
        met = "" if goal is None else f"{goal * 1e3:,.0f} ms: {verdict}"
        write(
            f"| {case} | {rows:,} | {len(seconds)} | {median(seconds) * 1e3:,.1f} ms "
            f"| {max(seconds) * 1e3:,.1f} ms | {met} |"
        )


def _throughput(write):
    device = jax.devices()[0]
    write("")
    write(
        f"Throughput ({platform.processor() or platform.machine()}, jax {jax.__version__} on "
        f"{device.platform}:{device.device_kind})"
    )
    write("| case | batch | implementation | mean time | spectra/s | ratio to reference |")
    write("| --- | ---: | --- | ---: | ---: | ---: |")
    # the reference of a row: same case and batch, else the case's only reference
    rates = [(g, b, b / m) for g, i, b, m in _ROWS if i.startswith("numpy")]
    reference = {(g, b): r for g, b, r in rates}
    for group in {g for g, _, _ in rates}:
        only = [r for g, _, r in rates if g == group]
        if len(only) == 1:
            reference.setdefault((group, None), only[0])
    for group, impl, batch, mean in _ROWS:
        ref = reference.get((group, batch), reference.get((group, None)))
        ratio = "" if not ref else f"{batch / mean / ref:.{1 if batch / mean >= ref else 2}f}x"
        write(
            f"| {group} | {batch} | {impl} | {mean * 1e3:.3f} ms | {batch / mean:,.0f} | {ratio} |"
        )
