"""Benchmarks: each records spectra per second; a table (ours against the reference, side by
side, from the same run) is printed at the end for benchmarks/RESULTS.md. The ratio is our
rate over the reference's, on the same case."""

import platform

import jax
import pytest

_ROWS = []


@pytest.fixture
def record():
    """``record(benchmark, group, impl, batch)`` after ``benchmark(...)`` has run."""

    def add(benchmark, group, impl, batch):
        mean = benchmark.stats.stats.mean
        benchmark.extra_info["spectra_per_s"] = batch / mean
        _ROWS.append((group, impl, batch, mean))

    return add


def pytest_terminal_summary(terminalreporter):
    if not _ROWS:
        return
    write = terminalreporter.write_line
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
