"""Reading one source spectrum with the files it names, in worker processes: a file that
kills its worker costs only itself."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from xspecvae.ogip import (
    Arf,
    OGIPError,
    Pha,
    background_ratio,
    read_arf,
    read_pha,
)

# ---------------------------------------------------------------------------------------------
# Reading one source (in a worker process)


def _read_source(path: Path) -> dict:
    """Everything one source spectrum brings, at full channel resolution, or the problem."""
    record = {"path": path, "problem": None, "background_file": "", "arf_file": ""}
    try:
        pha = read_pha(path)
        bkg_path, arf_path = pha.locate("backfile"), pha.locate("ancrfile")
        for key, found in (("background_file", bkg_path), ("arf_file", arf_path)):
            record[key] = str(found.resolve()) if found else ""
        if pha.kind == "NET" or not pha.poisserr:
            raise OGIPError(path, f"{pha.kind} spectrum without Poisson counts: not packable")
        if pha.backfile and bkg_path is None:
            raise OGIPError(path, f"background {pha.backfile} (BACKFILE) not found")
        if bkg_path is not None and bkg_path.resolve() == path.resolve():
            record["background_file"] = ""  # not used: the spectrum itself
            raise OGIPError(path, "BACKFILE names the spectrum itself")
        if not pha.ancrfile:
            raise OGIPError(path, "no ARF (ANCRFILE): the pack needs each source's ARF")
        if arf_path is None:
            raise OGIPError(path, f"ARF {pha.ancrfile} (ANCRFILE) not found")
        background = alpha = np.zeros(pha.n_channel)
        if bkg_path is not None:
            bkg = _read_auxiliary(read_pha, bkg_path, record)
            alpha, background = background_ratio(pha, bkg), bkg.counts
        arf = _read_auxiliary(read_arf, arf_path, record)
    except OGIPError as err:
        record["problem"] = (err.path, err.problem)
        return record
    except Exception as err:  # a reader bug must not stop the batch: report it
        record["problem"] = (path, f"unexpected {type(err).__name__}: {err}")
        return record
    record.update(pha=pha, background=background, alpha=alpha, arf=arf)
    return record


def _died(path: Path) -> dict:
    """The record of a spectrum whose reader process died."""
    problem = (path, "its reader process died (out of memory, or a crash in a library)")
    return {"path": path, "problem": problem, "background_file": "", "arf_file": ""}


def _read_auxiliary(reader: Callable[[Path], Pha | Arf], path: Path, record: dict):
    """``reader(path)``, noting ``path`` as a bad file in ``record`` if it cannot be read."""
    try:
        return reader(path)
    except OGIPError:
        record["bad_file"] = path.resolve()
        raise


def _map(
    function: Callable[[Any], Any],
    items: list,
    jobs: int | None,
    progress: bool,
    crashed: Callable[[Any], Any],
):
    """``function`` over ``items`` in order, in ``jobs`` processes, with a progress bar.

    A worker that dies (killed for memory, a crash inside a library) breaks its pool: the
    items then in flight are retried one by one, each in a process of its own, and one that
    kills that process too gives ``crashed(item)``; the others go on in a new pool."""
    jobs = jobs or os.cpu_count() or 1
    bar = tqdm(total=len(items), unit="spectrum", disable=not progress, desc="reading")
    if jobs == 1 or len(items) < 2:
        for item in items:
            yield function(item)
            bar.update()
    else:
        todo = deque(items)
        while todo:
            for result in _pool_map(function, todo, jobs, crashed):
                yield result
                bar.update()
    bar.close()


def _pool_map(
    function: Callable[[Any], Any], todo: deque, jobs: int, crashed: Callable[[Any], Any]
):
    """Results of ``function`` over ``todo`` (consumed) from one pool, until it is done or
    broken; then the items it had in flight, the unfinished ones retried alone."""
    pending = deque()  # (item, future): a bounded window in flight, as results are large
    submitted = 0
    with _pool(jobs) as pool:
        try:
            while todo or pending:
                while todo and len(pending) < 16 * jobs:
                    item = todo.popleft()
                    spawning = submitted < jobs  # a submit starts a worker until there are jobs
                    pending.append((item, _submit(pool, function, item, spawning)))
                    submitted += 1
                result = pending[0][1].result()
                pending.popleft()
                yield result
        except BrokenProcessPool:
            pass
        except (KeyboardInterrupt, GeneratorExit):  # the pool then waits only for running reads
            for _, future in pending:
                future.cancel()
            raise
    for item, future in pending:
        done = future.done() and future.exception() is None
        yield future.result() if done else _alone(function, item, crashed)


def _alone(function: Callable[[Any], Any], item: Any, crashed: Callable[[Any], Any]):
    """``function(item)`` in a process of its own, or ``crashed(item)`` if that process dies."""
    with _pool(1) as pool:
        try:
            return _submit(pool, function, item, True).result()
        except BrokenProcessPool:
            return crashed(item)


def _pool(jobs: int) -> ProcessPoolExecutor:
    """Worker processes started afresh (no fork of a JAX process) that leave Ctrl-C to this
    one and end when it is gone (a killed parent cannot tell them)."""
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(
        jobs, mp_context=context, initializer=_worker_start, initargs=(os.getpid(),)
    )


def _submit(pool: ProcessPoolExecutor, function: Callable[[Any], Any], item: Any, spawning: bool):
    """``pool.submit``; when it may start a worker (``spawning``), with Ctrl-C blocked for that
    instant: the worker inherits the mask, so Ctrl-C never interrupts one while it starts, and
    a Ctrl-C that comes meanwhile reaches this process as soon as the submit returns (ignoring
    it instead would lose it)."""
    if not spawning:
        return pool.submit(function, item)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        return pool.submit(function, item)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_start(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C pending since its start is dropped
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
