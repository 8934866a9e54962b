"""The OGIP readers on damaged copies of the real XMM-Newton files (property-based, hypothesis).

Contract under test: on any damaged or invalid input, ``read_pha``, ``read_pha_rows``,
``read_arf``, ``read_rmf`` and ``read_ogip`` raise :class:`xspecvae.OGIPError` (exactly that
type) whose message starts with the file's path and names the problem; nothing else escapes,
not even with warnings turned into errors, and no read hangs. A damaged file that still reads
gives an object that keeps the readers' promises (finite non-negative counts, positive
exposure and scales, increasing ARF energies, a finite matrix of the right shape...).

The real files are read once into memory; every example writes its damaged bytes into
``tmp_path`` (the shared data folder is never touched).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import signal
import tempfile
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import xspecvae as xv
from xspecvae import OGIPError
from xspecvae.ogip import Arf, Pha, Rmf

SPECTRUM = "pps_0760940101/P0760940101PNS003SRSPEC0001.FTZ"
BACKGROUND = "pps_0760940101/P0760940101PNS003BGSPEC0001.FTZ"
SRC_ARF = "pps_0760940101/P0760940101PNS003SRCARF0001.FTZ"
PN_ARF = "ngc7793_ulx4/PN.arf"
RMF_VLA = "responses/epn_ff20_dY9.rmf"  # variable-length F_CHAN, N_CHAN and MATRIX
RMF_FIXED = "ngc7793_ulx4/PN.rmf"  # fixed-width F_CHAN/N_CHAN (18 groups), VLA MATRIX

# name in the tests -> (file in the data folder, kind)
FILES = {
    "spectrum.FTZ": (SPECTRUM, "spectrum"),
    "background.FTZ": (BACKGROUND, "spectrum"),
    "arf.FTZ": (SRC_ARF, "arf"),
    "pn.arf": (PN_ARF, "arf"),
    "dY9.rmf": (RMF_VLA, "rmf"),
    "pn.rmf": (RMF_FIXED, "rmf"),
}
PLAIN = {  # uncompressed copies (gunzipped here) of the compressed files
    "spectrum.fits": "spectrum.FTZ",
    "background.fits": "background.FTZ",
    "arf.fits": "arf.FTZ",
}
KIND = {name: kind for name, (_, kind) in FILES.items()}
KIND.update({plain: KIND[packed] for plain, packed in PLAIN.items()})
READERS = {
    "spectrum": (xv.read_pha, xv.read_pha_rows, xv.read_ogip),
    "arf": (xv.read_arf, xv.read_ogip),
    "rmf": (xv.read_rmf, xv.read_ogip),
}
ALL_READERS = ["read_pha", "read_pha_rows", "read_arf", "read_rmf", "read_ogip"]
SMALL = [
    "spectrum.FTZ",
    "spectrum.fits",
    "background.FTZ",
    "background.fits",
    "arf.FTZ",
    "arf.fits",
    "pn.arf",
]
RMFS = ["dY9.rmf", "pn.rmf"]

TIME_LIMIT = {"spectrum": 5.0, "arf": 5.0, "rmf": 20.0}  # normal reads take < 0.5 s
# Byte-level fuzzing: no shrink phase (a hanging read costs the whole time limit per try, and
# the falsifying example is printed either way).
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = {
    "deadline": None,
    "suppress_health_check": HEALTH,
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
}
STRUCTURE = {"deadline": None, "suppress_health_check": HEALTH}
TRUNCATION_WORDS = ("truncat", "corrupt", "incomplete", "missing END", "END card", "damaged")


# ---------------------------------------------------------------------------------------------
# The real files, in memory


class Files(dict):
    """File name -> contents, with a short repr (hypothesis prints the fixtures of a failure)."""

    def __repr__(self):
        return f"<{', '.join(self)}>"


@pytest.fixture(scope="module")
def originals(xmm) -> Files:
    """Bytes of the real files (as stored) and of gunzipped copies of the compressed ones."""
    data = Files((name, (xmm / relative).read_bytes()) for name, (relative, _) in FILES.items())
    for plain, packed in PLAIN.items():
        data[plain] = gzip.decompress(data[packed])
    return data


@pytest.fixture(scope="module")
def references(originals, tmp_path_factory) -> Files:
    """The undamaged files as the readers see them (spectra and ARFs only: RMFs are slow)."""
    folder = tmp_path_factory.mktemp("undamaged")
    result = Files()
    for name in SMALL:
        path = folder / name
        path.write_bytes(originals[name])
        result[name] = xv.read_pha(path) if KIND[name] == "spectrum" else xv.read_arf(path)
    return result


def layout(data: bytes) -> list[tuple[int, int, int]]:
    """(header start, data start, end incl. padding) of each HDU of plain FITS bytes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(data), lazy_load_hdus=False) as hdul:
            spans = [hdu.fileinfo() for hdu in hdul]
    return [(s["hdrLoc"], s["datLoc"], s["datLoc"] + s["datSpan"]) for s in spans]


# ---------------------------------------------------------------------------------------------
# Calling a reader: the outcome, with every promise checked


class ReaderHung(BaseException):
    """A read ran past its time limit (BaseException: no ``except Exception`` swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise ReaderHung in this (main) thread once ``seconds`` have passed, again every 50 ms
    until it gets through (a signal handler's exception raised inside a gc callback is
    dropped). No limit where SIGALRM is not available."""
    main = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not main:
        yield
        return
    armed = [True]

    def alarm(signum, frame):
        if armed[0]:
            raise ReaderHung(
                f"the read did not finish within {seconds:g} s (hang or runaway memory use)"
            )

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.05)
    try:
        yield
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def strict(kind: str):
    """Time limit, and warnings turned into errors (none may escape a reader as an exception).
    A hang becomes an AssertionError once out of the reader (hypothesis then reports the
    example like any failure)."""
    try:
        with time_limit(TIME_LIMIT[kind]), warnings.catch_warnings():
            warnings.simplefilter("error")
            yield
    except ReaderHung as exc:
        raise AssertionError(str(exc)) from exc


def problem_of(exc: OGIPError, path) -> str:
    """Check the error's type and that its message starts with the path; return the rest."""
    assert type(exc) is OGIPError, type(exc)
    assert exc.path == str(path), (exc.path, str(path))
    message = str(exc)
    assert message.startswith(str(path) + ": "), message
    problem = message[len(str(path)) + 2 :]
    assert problem.strip(), message
    return problem


def names(problem: str, words) -> bool:
    return any(w.lower() in problem.lower() for w in words)


def attempt(reader, path: Path, kind: str):
    """``reader(path)``: the object read (checked), or the OGIPError raised (checked).
    Anything else propagates and fails the test."""
    with strict(kind):
        try:
            result = reader(path)
        except OGIPError as exc:
            problem_of(exc, path)
            return exc
    check_valid(result, path)
    return result


def expect_error(reader, path: Path, kind: str, words=()) -> str:
    """``reader(path)`` must raise OGIPError naming the path and (one of) ``words``."""
    with strict(kind), pytest.raises(OGIPError) as info:
        reader(path)
    problem = problem_of(info.value, path)
    if words:
        assert names(problem, words), f"{reader.__name__}: {problem!r} names none of {words}"
    return problem


def check_valid(obj, path: Path) -> None:
    """The promises of the readers about what they return."""
    if isinstance(obj, list):  # read_pha_rows / read_ogip on a type II file
        assert obj, "no spectra returned for a spectrum file"
        for item in obj:
            check_valid(item, path)
        return
    assert Path(obj.path) == Path(path)
    if isinstance(obj, Pha):
        counts = np.asarray(obj.counts)
        assert counts.ndim == 1 and counts.size > 0
        assert len(obj.channel) == counts.size == obj.n_channel
        assert np.all(np.diff(obj.channel) == 1) and obj.first_channel == obj.channel[0]
        assert np.all(np.isfinite(counts)), "non-finite counts returned"
        if not (obj.kind == "NET" and not obj.poisserr):
            assert np.all(counts >= 0), "negative counts returned for a Poisson spectrum"
        assert isinstance(obj.exposure, float)
        assert np.isfinite(obj.exposure) and obj.exposure > 0, obj.exposure
        good = np.asarray(obj.quality) == 0
        assert np.shape(obj.quality) == counts.shape == np.shape(obj.grouping)
        for name in ("backscal", "areascal"):
            scale = getattr(obj, name)
            if np.ndim(scale) == 0:
                assert isinstance(scale, float), (name, type(scale))
                assert np.isfinite(scale) and scale > 0, (name, scale)
            else:
                scale = np.asarray(scale)
                assert scale.shape == counts.shape, name
                assert np.all(np.isfinite(scale[good])) and np.all(scale[good] > 0), name
    elif isinstance(obj, Arf):
        lo, hi, area = obj.energy_lo, obj.energy_hi, obj.specresp
        assert lo.ndim == 1 and lo.shape == hi.shape == area.shape and lo.size > 0
        assert np.all(np.isfinite(area)) and np.all(area >= 0), "bad SPECRESP returned"
        assert np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))
        assert np.all(lo >= 0) and np.all(hi > lo) and np.all(np.diff(lo) > 0)
    elif isinstance(obj, Rmf):
        matrix = obj.matrix
        assert matrix.shape == (len(obj.energy_lo), len(obj.channel)), matrix.shape
        assert np.all(np.isfinite(matrix)), "non-finite matrix returned"
        assert obj.energy_hi.shape == obj.energy_lo.shape
        assert np.all(np.diff(obj.energy_lo) > 0) and np.all(obj.energy_hi > obj.energy_lo)
        assert np.all(np.diff(obj.channel) == 1) and obj.first_channel == obj.channel[0]
    else:
        raise AssertionError(f"unexpected result type {type(obj).__name__}")


def same_reading(a, b) -> bool:
    """Two outcomes are the same: both errors, or equal spectra/ARFs/RMFs."""
    if isinstance(a, OGIPError) or isinstance(b, OGIPError):
        return isinstance(a, OGIPError) and isinstance(b, OGIPError)
    if isinstance(a, list) or isinstance(b, list):
        return (
            isinstance(a, list)
            and isinstance(b, list)
            and len(a) == len(b)
            and all(same_reading(x, y) for x, y in zip(a, b, strict=True))
        )
    if type(a) is not type(b):
        return False
    fields = {
        Pha: ("channel", "counts", "exposure", "backscal", "areascal", "quality"),
        Arf: ("energy_lo", "energy_hi", "specresp"),
        Rmf: ("energy_lo", "energy_hi", "channel", "matrix"),
    }[type(a)]
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in fields)


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# ---------------------------------------------------------------------------------------------
# Strategies for byte damage, placed relative to the HDUs (so explicit examples do not depend
# on the file): (hdu index, "header" or "data", position, new bytes)

new_bytes = st.one_of(
    st.binary(min_size=1, max_size=8),
    st.sampled_from(
        [
            b"0",
            b"9",
            b"-",
            b" ",
            b"'",
            b"E",
            b"=",
            b"\x00",
            b"\xff",
            b"\x7f\xc0",
            b"\x80\x00\x00\x00",
            b"\xff\xff\xff\xff",
            b"NaN",
            b"END",
            b"1E999",
        ]
    ),
)
overwrite = st.tuples(
    st.integers(0, 20),
    st.sampled_from(["header", "value", "data"]),
    st.integers(0, 10**7),
    new_bytes,
)


def apply_overwrites(data: bytes, spans, damage) -> bytes:
    out = bytearray(data)
    for hdu, area, position, new in damage:
        start, data_start, end = spans[hdu % len(spans)]
        if area == "value":  # in the value field (columns 11-30) of a card before END
            header = data[start:data_start]
            n_cards = next(
                i for i in range(len(header) // 80) if header[80 * i : 80 * i + 8] == b"END     "
            )
            offset = start + 80 * ((position // 20) % max(n_cards, 1)) + 10 + position % 20
        else:
            lo, hi = (
                (start, data_start) if area == "header" or data_start == end else (data_start, end)
            )
            offset = lo + position % max(hi - lo, 1)
        out[offset : offset + len(new)] = new[: max(len(out) - offset, 0)]
    return bytes(out[: len(data)])


def check_truncation_named(problem: str, offset: int, size: int) -> None:
    """The message of a truncated file says so (or that it is corrupt), once the file is long
    enough to be recognised at all (one 80-byte card)."""
    if offset >= 80:
        assert names(problem, TRUNCATION_WORDS), f"cut at {offset} of {size}: {problem!r}"


def truncation_point(spans, size: int, where) -> int:
    hdu, area, position = where
    start, data_start, end = spans[hdu % len(spans)]
    lo, hi = (start, data_start) if area == "header" or data_start == end else (data_start, end)
    return min(lo + position % max(hi - lo, 1), size - 1)


where = st.tuples(st.integers(0, 20), st.sampled_from(["header", "data"]), st.integers(0, 10**7))


# ---------------------------------------------------------------------------------------------
# 1. Truncation


@settings(max_examples=70, **FUZZ)
@given(
    name=st.sampled_from(["spectrum.fits", "background.fits", "arf.fits", "pn.arf"]),
    cut=where,
    reader_index=st.integers(0, 2),
)
@example(name="spectrum.fits", cut=(2, "header", 100), reader_index=0)  # in the REGION header
@example(name="spectrum.fits", cut=(1, "data", 20000), reader_index=0)  # in the spectrum data
def test_truncated_plain_fits_raises(originals, references, tmp_path, name, cut, reader_index):
    """A FITS file cut at any byte raises OGIPError naming the truncation, except a cut exactly
    between two HDUs (a valid shorter file), which may read, but only to the complete data."""
    data = originals[name]
    spans = layout(data)
    offset = truncation_point(spans, len(data), cut)
    path = write(tmp_path, name, data[:offset])
    readers = READERS[KIND[name]]
    reader = readers[reader_index % len(readers)]
    outcome = attempt(reader, path, KIND[name])
    if offset in {start for start, _, _ in spans[1:]}:
        # a cut exactly between HDUs leaves a valid FITS file with fewer HDUs: an error (any
        # message: "no SPECTRUM extension" is then right) or the complete data
        if not isinstance(outcome, OGIPError):
            expected = references[name]
            assert same_reading(outcome if not isinstance(outcome, list) else outcome[0], expected)
        return
    assert isinstance(outcome, OGIPError), (
        f"{reader.__name__} read a file truncated at byte {offset} of {len(data)} "
        f"(HDUs at {[s for s, _, _ in spans]})"
    )
    check_truncation_named(problem_of(outcome, path), offset, len(data))


@settings(max_examples=60, **FUZZ)
@given(
    name=st.sampled_from(["spectrum.FTZ", "background.FTZ", "arf.FTZ"]),
    fraction=st.one_of(st.floats(0, 1, exclude_max=True), st.integers(1, 40)),
    reader_index=st.integers(0, 2),
)
@example(name="spectrum.FTZ", fraction=0.5, reader_index=0)  # inside the SPECTRUM data
@example(name="spectrum.FTZ", fraction=0.95, reader_index=0)  # in the GTI extensions
@example(name="arf.FTZ", fraction=4, reader_index=0)  # the gzip trailer (CRC, size) cut
def test_truncated_gzip_raises(originals, tmp_path, name, fraction, reader_index):
    """A .FTZ cut at any byte (a float: fraction of the file; an int: bytes cut off the end)
    raises OGIPError naming the truncation: gzip streams end with a CRC and length, so every
    cut is detectable, and none may read as a shorter file or with zero-filled data."""
    data = originals[name]
    offset = int(fraction * len(data)) if isinstance(fraction, float) else len(data) - fraction
    path = write(tmp_path, name, data[:offset])
    readers = READERS[KIND[name]]
    reader = readers[reader_index % len(readers)]
    outcome = attempt(reader, path, KIND[name])
    assert isinstance(outcome, OGIPError), (
        f"{reader.__name__} read {name} truncated at byte {offset} of {len(data)}"
    )
    check_truncation_named(problem_of(outcome, path), offset, len(data))


@settings(max_examples=8, **FUZZ)
@given(name=st.sampled_from(RMFS), cut=where)
@example(name="dY9.rmf", cut=(2, "header", 200))  # in the EBOUNDS header
def test_truncated_rmf_raises(originals, tmp_path, name, cut):
    data = originals[name]
    spans = layout(data)
    offset = truncation_point(spans, len(data), cut)
    path = write(tmp_path, name, data[:offset])
    problem = expect_error(xv.read_rmf, path, "rmf")
    if offset not in {start for start, _, _ in spans[1:]}:  # else "no EBOUNDS..." is right
        check_truncation_named(problem, offset, len(data))


# ---------------------------------------------------------------------------------------------
# 2. Random byte overwrites


@settings(max_examples=120, **FUZZ)
@given(
    name=st.sampled_from(["spectrum.fits", "background.fits", "arf.fits", "pn.arf"]),
    damage=st.lists(overwrite, min_size=1, max_size=6),
    reader_index=st.integers(0, 2),
)
def test_overwritten_bytes_plain(originals, tmp_path, name, damage, reader_index):
    """A few bytes overwritten anywhere (headers or data): OGIPError or a valid object."""
    data = originals[name]
    path = write(tmp_path, name, apply_overwrites(data, layout(data), damage))
    readers = READERS[KIND[name]]
    attempt(readers[reader_index % len(readers)], path, KIND[name])


@settings(max_examples=100, **FUZZ)
@given(
    name=st.sampled_from(["spectrum.FTZ", "background.FTZ", "arf.FTZ"]),
    damage=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 40), st.floats(0, 1, exclude_max=True), st.integers(-8, -1)),
            new_bytes,
        ),
        min_size=1,
        max_size=4,
    ),
    reader_index=st.integers(0, 2),
)
# one byte of the deflate data: the stream still decodes (to garbage from the spectrum data on,
# the CRC fails at its end), and the REGION header becomes an astropy _CorruptedHDU
@example(name="background.FTZ", damage=[(9940, b"\x91")], reader_index=0)
def test_overwritten_bytes_gzip(originals, references, tmp_path, name, damage, reader_index):
    """Bytes of the compressed stream overwritten (gzip header, deflate data, CRC/length
    trailer): OGIPError, or exactly the undamaged reading (the CRC-32 and length at the end
    of a gzip stream catch any change of the content), never another exception or a hang."""
    out = bytearray(originals[name])
    for where_, new in damage:
        offset = int(where_ * len(out)) if isinstance(where_, float) else where_ % len(out)
        out[offset : offset + len(new)] = new
    path = write(tmp_path, name, bytes(out[: len(originals[name])]))
    readers = READERS[KIND[name]]
    outcome = attempt(readers[reader_index % len(readers)], path, KIND[name])
    if not isinstance(outcome, OGIPError):
        read = outcome[0] if isinstance(outcome, list) else outcome
        assert same_reading(read, references[name]), "damaged gzip content read as valid"


@settings(max_examples=10, **FUZZ)
@given(name=st.sampled_from(RMFS), damage=st.lists(overwrite, min_size=1, max_size=4))
def test_overwritten_bytes_rmf(originals, tmp_path, name, damage):
    data = originals[name]
    path = write(tmp_path, name, apply_overwrites(data, layout(data), damage))
    attempt(xv.read_rmf, path, "rmf")


@settings(max_examples=50, **FUZZ)
@given(
    name=st.sampled_from(["spectrum.fits", "background.fits", "arf.fits"]),
    damage=st.lists(overwrite, min_size=1, max_size=4),
    cut=st.one_of(st.none(), where),
    reader_index=st.integers(0, 2),
)
# the closing quote of XTENSION = 'BINTABLE' in the REGION header blanked
@example(name="background.fits", damage=[(2, "header", 19, b" ")], cut=None, reader_index=0)
# a clean cut between the REGION and the first GTI extension
@example(
    name="spectrum.fits", damage=[(0, "header", 2000, b" ")], cut=(3, "header", 0), reader_index=0
)
def test_compression_does_not_change_the_outcome(
    originals, tmp_path, name, damage, cut, reader_index
):
    """The same damaged FITS content, read plain and gzip-compressed: the same outcome (both
    OGIPError, or equal objects)."""
    data = originals[name]
    spans = layout(data)
    damaged = apply_overwrites(data, spans, damage)
    if cut is not None:
        damaged = damaged[: truncation_point(spans, len(data), cut)]
    plain = write(tmp_path, "plain_" + name, damaged)
    packed = write(tmp_path, "packed_" + name + ".gz", gzip.compress(damaged, compresslevel=1))
    readers = READERS[KIND[name]]
    reader = readers[reader_index % len(readers)]
    from_plain = attempt(reader, plain, KIND[name])
    from_packed = attempt(reader, packed, KIND[name])
    assert same_reading(from_plain, from_packed), (
        f"{reader.__name__}: plain -> {from_plain!r:.200}, gzip -> {from_packed!r:.200}"
    )


# ---------------------------------------------------------------------------------------------
# 3. Structural damage built with astropy


def _rebuild(hdul, ext, columns):
    """Replace table ``ext`` by one of ``columns`` (same header otherwise). Every column is
    rebuilt from plain arrays: astropy copies variable-length columns of these files wrongly
    otherwise."""
    hdu = hdul[ext]
    kept = {id(c) for c in hdu.columns}  # columns of the table itself (not new ones)
    plain = []
    for c in columns:
        if id(c) in kept:
            values = hdu.data[c.name]
            variable = re.match(r"\d*([PQ])([A-Z])", str(c.format))
            if variable:
                c = fits.Column(
                    name=c.name,
                    format=f"{variable[1]}{variable[2]}()",
                    unit=c.unit,
                    array=[np.array(v) for v in values],
                )
            else:
                c = fits.Column(name=c.name, format=c.format, unit=c.unit, array=np.array(values))
        plain.append(c)
    hdul[ext] = fits.BinTableHDU.from_columns(
        fits.ColDefs(plain), header=hdu.header.copy(), name=hdu.name
    )


def drop_column(ext, column):
    def apply(hdul):
        _rebuild(hdul, ext, [c for c in hdul[ext].columns if c.name != column])

    return apply


def replace_column(ext, column, fmt, values):
    """Column ``column`` rewritten with format ``fmt`` and ``values(old array)``."""

    def apply(hdul):
        cols = []
        for c in hdul[ext].columns:
            if c.name == column:
                old = hdul[ext].data[column]
                c = fits.Column(name=column, format=fmt, unit=c.unit, array=values(old))
            cols.append(c)
        _rebuild(hdul, ext, cols)

    return apply


def delete_hdu(ext):
    def apply(hdul):
        del hdul[ext]

    return apply


def rename_hdu(ext, new, drop=()):
    def apply(hdul):
        hdu = hdul[ext]
        for key in drop:
            hdu.header.pop(key, None)
        hdu.name = new

    return apply


def set_keyword(ext, key, value):
    def apply(hdul):
        if value is None:
            hdul[ext].header.pop(key, None)
        else:
            hdul[ext].header[key] = value

    return apply


def raw_keyword(ext, key, text):
    """Set a card's value to text astropy will not write itself (NaN, an empty value)."""

    def apply(hdul):
        hdul[ext].header[key] = 12345.0  # a placeholder replaced in the bytes
        return ("card", f"{key:<8}= {'12345.0':>20}".encode(), f"{key:<8}= {text:>20}".encode())

    return apply


def set_cell(ext, column, row, value, group=0):
    """One value of a column (element ``group`` of a vector or variable-length cell) set, by
    patching the bytes. ``row``, ``value`` and ``group`` may be functions of the table data
    (and row)."""

    def apply(hdul):
        data = hdul[ext].data
        r = row(data) if callable(row) else row
        v = value(data, r) if callable(value) else value
        g = group(data, r) if callable(group) else group
        return ("cells", [(ext, column, r, g, v)])

    return apply


def keep_rows(ext, n, keywords=None):
    def apply(hdul):
        hdu = hdul[ext]
        table = fits.BinTableHDU(data=hdu.data[:n], header=hdu.header, name=hdu.name)
        for key, value in (keywords or {}).items():
            table.header[key] = value
        hdul[ext] = table

    return apply


_ELEMENT = {"L": "u1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def patch_cells(data: bytes, edits) -> bytes:
    """Overwrite single table values in FITS bytes: edits (ext, column, row, index, value),
    index counting within a vector or variable-length (heap) cell. Byte patches, because
    astropy does not always rewrite the heap of a modified variable-length column faithfully
    (it corrupted the MATRIX rows of epn_ff20_dY9.rmf)."""
    out = bytearray(data)
    with fits.open(io.BytesIO(data), lazy_load_hdus=False) as hdul:
        for ext, column, row, index, value in edits:
            hdu = hdul[ext]
            header = hdu.header
            start = hdu.fileinfo()["datLoc"]
            width, n_rows = header["NAXIS1"], header["NAXIS2"]
            k = hdu.columns.names.index(column) + 1
            tform = header[f"TFORM{k}"].strip()
            field = _field_offset(header, k)
            assert 0 <= row < n_rows
            variable = re.fullmatch(r"(\d*)([PQ])([A-Z])(\(.*\))?", tform)
            if variable:
                descriptor = ">i4" if variable[2] == "P" else ">i8"
                at = start + row * width + field
                count, offset = np.frombuffer(
                    bytes(out[at : at + 2 * np.dtype(descriptor).itemsize]), dtype=descriptor
                )
                element = np.dtype(_ELEMENT[variable[3]])
                assert 0 <= index < count, (column, row, index, count)
                at = start + header.get("THEAP", width * n_rows) + offset + index * element.itemsize
            else:
                fixed = re.fullmatch(r"(\d*)([A-Z])", tform)
                element = np.dtype(_ELEMENT[fixed[2]])
                assert 0 <= index < int(fixed[1] or 1), (column, index)
                at = start + row * width + field + index * element.itemsize
            out[at : at + element.itemsize] = np.array(value).astype(element).tobytes()
    return bytes(out)


def _field_offset(header, k: int) -> int:
    """Byte offset of column ``k`` (1-based) within a row."""
    size = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "E": 4, "D": 8, "A": 1, "C": 8, "M": 16, "X": 0}
    offset = 0
    for i in range(1, k):
        tform = header[f"TFORM{i}"].strip()
        repeat, letter = re.match(r"(\d*)([A-Z])", tform).groups()
        repeat = int(repeat or 1)
        if letter in "PQ":
            offset += repeat * (8 if letter == "P" else 16)
        elif letter == "X":
            offset += (repeat + 7) // 8
        else:
            offset += repeat * size[letter]
    return offset


def damaged_copy(originals, name, damage, folder: Path) -> Path:
    """Apply ``damage``, a function of the HDUList of the plain bytes of ``name`` that either
    changes it (rewritten by astropy), or returns ("card", old, new) (a card image replaced
    after writing), or ("cells", edits) (values patched in the original bytes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fits.open(io.BytesIO(originals[name]), lazy_load_hdus=False) as hdul:
            hdul = fits.HDUList([hdu for hdu in hdul])
            patch = damage(hdul)
            if patch is not None and patch[0] == "cells":
                return write(folder, "damaged_" + name, patch_cells(originals[name], patch[1]))
            buffer = io.BytesIO()
            hdul.writeto(buffer, output_verify="ignore")
    data = buffer.getvalue()
    if patch is not None:
        _, old, new = patch
        assert old in data, "placeholder card not written"
        data = data.replace(old, new.ljust(len(old)))
    return write(folder, "damaged_" + name, data)


def _backscal_column_of_zeros(hdul):
    hdul[1].header.pop("BACKSCAL", None)
    zeros = fits.Column(name="BACKSCAL", format="E", array=np.zeros(len(hdul[1].data)))
    _rebuild(hdul, 1, list(hdul[1].columns) + [zeros])


MID = 2000  # a channel in the middle of the 4096 pn channels
PHA_DAMAGES = {
    "no COUNTS column": (drop_column(1, "COUNTS"), ["COUNTS"]),
    "no CHANNEL column": (drop_column(1, "CHANNEL"), ["CHANNEL"]),
    "no SPECTRUM extension": (delete_hdu(1), ["SPECTRUM"]),
    "SPECTRUM renamed, no HDUCLAS1": (rename_hdu(1, "SPECTRA", drop=["HDUCLAS1"]), ["SPECTRUM"]),
    "EXPOSURE = 0": (set_keyword(1, "EXPOSURE", 0.0), ["EXPOSURE"]),
    "EXPOSURE negative": (set_keyword(1, "EXPOSURE", -84005.27), ["EXPOSURE"]),
    "EXPOSURE a string": (set_keyword(1, "EXPOSURE", "84 ks"), ["EXPOSURE"]),
    "EXPOSURE missing": (set_keyword(1, "EXPOSURE", None), ["EXPOSURE"]),
    "EXPOSURE = NaN": (raw_keyword(1, "EXPOSURE", "NaN"), ["EXPOSURE"]),
    "EXPOSURE = 1E999 (inf)": (raw_keyword(1, "EXPOSURE", "1E999"), ["EXPOSURE"]),
    "EXPOSURE without a value": (raw_keyword(1, "EXPOSURE", ""), ["EXPOSURE"]),
    "BACKSCAL = 0": (set_keyword(1, "BACKSCAL", 0.0), ["BACKSCAL"]),
    "BACKSCAL negative": (set_keyword(1, "BACKSCAL", -320380.0), ["BACKSCAL"]),
    "BACKSCAL a string": (set_keyword(1, "BACKSCAL", "large"), ["BACKSCAL"]),
    "AREASCAL = 0": (set_keyword(1, "AREASCAL", 0.0), ["AREASCAL"]),
    "AREASCAL negative": (set_keyword(1, "AREASCAL", -1.0), ["AREASCAL"]),
    "BACKSCAL column zero on good channels": (_backscal_column_of_zeros, ["BACKSCAL"]),
    "negative counts": (set_cell(1, "COUNTS", MID, -5), ["negative", "counts"]),
    "NaN counts": (
        replace_column(
            1,
            "COUNTS",
            "E",
            lambda c: np.where(np.arange(c.size) == MID, np.nan, c).astype(np.float32),
        ),
        ["counts", "finite", "NaN"],
    ),
    "infinite counts": (
        replace_column(1, "COUNTS", "D", lambda c: np.where(np.arange(c.size) == MID, np.inf, c)),
        ["counts", "finite", "inf"],
    ),
    "CHANNEL repeated": (set_cell(1, "CHANNEL", MID, MID - 1), ["CHANNEL"]),
    "QUALITY as text": (
        replace_column(1, "QUALITY", "4A", lambda q: np.array(["good"] * q.size)),
        ["QUALITY"],
    ),
    "empty SPECTRUM table": (keep_rows(1, 0), ["empty", "channel", "spectrum", "rows"]),
    "empty TYPE:II SPECTRUM table": (
        keep_rows(1, 0, {"HDUCLAS4": "TYPE:II"}),
        ["empty", "spectra", "spectrum", "rows"],
    ),
}


def _swap_rows(column, i, j):
    def apply(hdul):
        values = hdul[1].data[column]
        return ("cells", [(1, column, i, 0, values[j]), (1, column, j, 0, values[i])])

    return apply


ARF_DAMAGES = {
    "no ENERG_LO column": (drop_column(1, "ENERG_LO"), ["ENERG_LO"]),
    "no ENERG_HI column": (drop_column(1, "ENERG_HI"), ["ENERG_HI"]),
    "no SPECRESP column": (drop_column(1, "SPECRESP"), ["SPECRESP"]),
    "no SPECRESP extension": (delete_hdu(1), ["SPECRESP"]),
    "SPECRESP renamed, no HDUCLAS2": (rename_hdu(1, "AREA", drop=["HDUCLAS2"]), ["SPECRESP"]),
    "negative SPECRESP": (set_cell(1, "SPECRESP", 500, -1.0), ["SPECRESP"]),
    "NaN SPECRESP": (set_cell(1, "SPECRESP", 500, np.nan), ["SPECRESP"]),
    "energies out of order": (_swap_rows("ENERG_LO", 500, 501), ["energ"]),
    "ENERG_HI below ENERG_LO": (set_cell(1, "ENERG_HI", 500, 0.01), ["energ"]),
    "NaN energy": (set_cell(1, "ENERG_LO", 500, np.nan), ["energ"]),
    "negative energy": (set_cell(1, "ENERG_LO", 0, -0.5), ["energ"]),
    "empty table": (keep_rows(1, 0), ["empty", "energ", "rows"]),
}


def _row_with_groups(data, at_least=1):
    """A row in the middle of the table with at least ``at_least`` channel groups."""
    n_grp = np.asarray(data["N_GRP"])
    rows = np.flatnonzero(n_grp >= at_least)
    return int(rows[len(rows) // 2])


def _last_group(data, row):
    return int(data["N_GRP"][row]) - 1


def _matrix_nan(hdul):
    data = hdul[1].data
    row = _row_with_groups(data)
    n_elements = int(np.sum(np.atleast_1d(data["N_CHAN"][row])[: data["N_GRP"][row]]))
    return ("cells", [(1, "MATRIX", row, n_elements // 2, np.nan)])


def _n_chan_beyond_matrix(hdul):
    """The last group of a row whose MATRIX row holds exactly its elements made 5 channels
    longer (still inside the channel range)."""
    data = hdul[1].data
    n_grp = np.asarray(data["N_GRP"])
    for row in np.flatnonzero(n_grp >= 1)[::-1]:
        g = int(n_grp[row]) - 1
        f_chan = np.atleast_1d(data["F_CHAN"][row])
        n_chan = np.atleast_1d(data["N_CHAN"][row])
        stored = np.atleast_1d(data["MATRIX"][row]).size
        if f_chan[g] + n_chan[g] + 5 <= 4096 and n_chan[g] > 0 and stored == n_chan[: g + 1].sum():
            return ("cells", [(1, "N_CHAN", int(row), g, n_chan[g] + 5)])
    raise AssertionError("no row to lengthen")


def _n_grp_beyond_groups(hdul):
    data = hdul[1].data
    row = _row_with_groups(data)
    return ("cells", [(1, "N_GRP", row, 0, np.atleast_1d(data["F_CHAN"][row]).size + 1)])


RMF_DAMAGES = {
    "no MATRIX column": (drop_column(1, "MATRIX"), ["MATRIX"]),
    "no N_GRP column": (drop_column(1, "N_GRP"), ["N_GRP"]),
    "no F_CHAN column": (drop_column(1, "F_CHAN"), ["F_CHAN"]),
    "no N_CHAN column": (drop_column(1, "N_CHAN"), ["N_CHAN"]),
    "no ENERG_LO column": (drop_column(1, "ENERG_LO"), ["ENERG_LO"]),
    "no ENERG_HI column": (drop_column(1, "ENERG_HI"), ["ENERG_HI"]),
    "no EBOUNDS CHANNEL column": (drop_column(2, "CHANNEL"), ["CHANNEL"]),
    "no E_MIN column": (drop_column(2, "E_MIN"), ["E_MIN"]),
    "no E_MAX column": (drop_column(2, "E_MAX"), ["E_MAX"]),
    "no MATRIX extension": (delete_hdu(1), ["MATRIX"]),
    "MATRIX renamed, no HDUCLAS2": (rename_hdu(1, "REDIST", drop=["HDUCLAS2"]), ["MATRIX"]),
    "no EBOUNDS extension": (delete_hdu(2), ["EBOUNDS"]),
    "EBOUNDS renamed": (rename_hdu(2, "CHANNELS"), ["EBOUNDS"]),
    "F_CHAN beyond the last channel": (
        set_cell(1, "F_CHAN", _row_with_groups, 5000, group=0),
        ["F_CHAN"],
    ),
    "F_CHAN below the first channel": (
        set_cell(1, "F_CHAN", _row_with_groups, -1, group=0),
        ["F_CHAN"],
    ),
    "N_CHAN longer than the MATRIX row": (_n_chan_beyond_matrix, ["N_CHAN", "MATRIX"]),
    "N_GRP beyond the F_CHAN groups": (_n_grp_beyond_groups, ["N_GRP", "F_CHAN"]),
    "negative N_GRP": (set_cell(1, "N_GRP", _row_with_groups, -1), ["N_GRP"]),
    "negative N_CHAN": (set_cell(1, "N_CHAN", _row_with_groups, -3, group=_last_group), ["N_CHAN"]),
    "MATRIX DETCHANS disagreeing with EBOUNDS": (set_keyword(1, "DETCHANS", 4000), ["DETCHANS"]),
    "EBOUNDS DETCHANS disagreeing with its rows": (set_keyword(2, "DETCHANS", 4000), ["DETCHANS"]),
    "DETCHANS a string": (set_keyword(1, "DETCHANS", "all"), ["DETCHANS"]),
    "TLMIN of F_CHAN disagreeing with EBOUNDS": (set_keyword(1, "TLMIN4", 1), ["TLMIN"]),
    "EBOUNDS CHANNEL repeated": (set_cell(2, "CHANNEL", MID, MID - 1), ["CHANNEL"]),
    "NaN in MATRIX": (_matrix_nan, ["MATRIX"]),
    "ENERG_LO out of order": (_swap_rows("ENERG_LO", 600, 601), ["energ"]),
    "empty MATRIX table": (keep_rows(1, 0), ["empty", "energ", "rows"]),
}
_BOTH = {
    "F_CHAN beyond the last channel",
    "F_CHAN below the first channel",
    "N_CHAN longer than the MATRIX row",
    "N_GRP beyond the F_CHAN groups",
    "negative N_CHAN",
    "NaN in MATRIX",
    "no F_CHAN column",
}
STRUCTURAL = (
    [("spectrum", damage, "spectrum.fits") for damage in sorted(PHA_DAMAGES)]
    + [("arf", damage, name) for damage in sorted(ARF_DAMAGES) for name in ("arf.fits", "pn.arf")]
    + [
        ("rmf", damage, name)
        for i, damage in enumerate(sorted(RMF_DAMAGES))
        for name in RMFS
        if damage in _BOTH or name == RMFS[i % 2]
    ]
)
DAMAGES = {"spectrum": PHA_DAMAGES, "arf": ARF_DAMAGES, "rmf": RMF_DAMAGES}


@pytest.mark.parametrize("kind,damage,name", STRUCTURAL)
def test_structural_damage_is_named(originals, tmp_path, kind, damage, name):
    """Every reader of the file's kind raises OGIPError naming what is wrong."""
    apply, words = DAMAGES[kind][damage]
    path = damaged_copy(originals, name, apply, tmp_path)
    for reader in READERS[kind]:
        expect_error(reader, path, kind, words)


@settings(max_examples=12, **STRUCTURE)
@given(
    name=st.sampled_from(RMFS),
    row=st.integers(0, 10**6),
    kind=st.sampled_from(["F_CHAN", "N_CHAN", "N_GRP"]),
    value=st.integers(-(2**15), 2**15 - 1),
)
def test_rmf_group_values_at_any_row(originals, tmp_path, name, row, kind, value):
    """Any F_CHAN/N_CHAN/N_GRP value in any row: OGIPError or a valid matrix; a value that
    reaches outside the channels or beyond the stored groups/elements must be an error."""

    def apply(hdul):
        data = hdul[1].data
        r = row % len(data)
        if kind == "N_GRP" or np.atleast_1d(data[kind][r]).size:
            return ("cells", [(1, kind, r, 0, value)])
        return ("cells", [])

    path = damaged_copy(originals, name, apply, tmp_path)
    with fits.open(path) as hdul:
        data = hdul[1].data
        r = row % len(data)
        n_grp = int(data["N_GRP"][r])
        f_chan = np.atleast_1d(data["F_CHAN"][r])[: max(n_grp, 0)].astype(int)
        n_chan = np.atleast_1d(data["N_CHAN"][r])[: max(n_grp, 0)].astype(int)
        groups_stored = np.atleast_1d(data["F_CHAN"][r]).size
        elements = np.atleast_1d(data["MATRIX"][r]).size
    invalid = (
        n_grp < 0
        or n_grp > groups_stored
        or np.any(n_chan < 0)
        or np.any(f_chan < 0)
        or np.any(f_chan + n_chan > 4096)
        or n_chan.sum() > elements
    )
    outcome = attempt(xv.read_rmf, path, "rmf")
    if invalid:
        assert isinstance(outcome, OGIPError), f"row {r}: {kind} = {value} was accepted"


# A damage may also leave legal but extreme values: the readers must then still keep their
# promises (or refuse the file).


@settings(max_examples=40, **STRUCTURE)
@given(
    exposure=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    scale=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    backscal=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    as_rate=st.booleans(),
)
@example(exposure=1e300, scale=1e10, backscal=1.0, as_rate=True)
def test_extreme_spectrum_values(originals, tmp_path, exposure, scale, backscal, as_rate):
    """EXPOSURE, BACKSCAL and the counts (or a RATE column) scaled to any finite positive
    value: OGIPError, or a spectrum with finite counts equal to RATE * EXPOSURE."""
    column = "RATE" if as_rate else "COUNTS"

    def apply(hdul):
        hdul[1].header["EXPOSURE"] = exposure
        hdul[1].header["BACKSCAL"] = backscal
        cols = []
        for c in hdul[1].columns:
            if c.name == "COUNTS":
                c = fits.Column(
                    name=column, format="D", array=hdul[1].data["COUNTS"].astype(float) * scale
                )
            cols.append(c)
        _rebuild(hdul, 1, cols)

    path = damaged_copy(originals, "spectrum.fits", apply, tmp_path)
    with fits.open(path) as hdul:  # as written (astropy keeps 16 digits in headers)
        stored = np.array(hdul[1].data[column], dtype=float)
        exposure, backscal = hdul[1].header["EXPOSURE"], hdul[1].header["BACKSCAL"]
    for reader in (xv.read_pha, xv.read_ogip):
        outcome = attempt(reader, path, "spectrum")
        if not isinstance(outcome, OGIPError):
            assert outcome.exposure == exposure and outcome.backscal == backscal
            expected = stored * exposure if as_rate else stored
            np.testing.assert_allclose(outcome.counts, expected, rtol=1e-12)


@settings(max_examples=6, **STRUCTURE)
@given(value=st.floats(min_value=1.0, allow_infinity=False, allow_nan=False))
@example(value=1e39)
def test_extreme_matrix_values(originals, tmp_path, value):
    """A float64 MATRIX column (legal: format PD) with one element of any finite value >= 1:
    OGIPError, or a finite matrix holding that value."""

    def apply(hdul):
        data = hdul[1].data
        rows = [np.asarray(r, dtype=np.float64) for r in data["MATRIX"]]
        row = _row_with_groups(data)
        rows[row] = rows[row].copy()
        rows[row][0] = value
        cols = [
            fits.Column(name="MATRIX", format="PD()", array=rows) if c.name == "MATRIX" else c
            for c in hdul[1].columns
        ]
        _rebuild(hdul, 1, cols)

    path = damaged_copy(originals, "dY9.rmf", apply, tmp_path)
    outcome = attempt(xv.read_rmf, path, "rmf")
    if not isinstance(outcome, OGIPError):
        assert np.max(outcome.matrix) == pytest.approx(value, rel=1e-6)


# ---------------------------------------------------------------------------------------------
# 4. Not FITS at all, or not a file


def _fits_header_then(junk: bytes) -> bytes:
    card = "SIMPLE  =                    T".ljust(80) + "BITPIX  =                    8".ljust(80)
    return card.encode() + junk


junk = st.one_of(
    st.binary(max_size=6000),
    st.binary(max_size=3000).map(_fits_header_then),
    st.binary(max_size=3000).map(lambda b: b"\x1f\x8b\x08\x00" + b),  # gzip magic, then junk
    st.binary(max_size=3000).map(lambda b: gzip.compress(b, compresslevel=1)),  # gzip of junk
    st.binary(max_size=3000).map(lambda b: b"BZh91AY&SY" + b),  # bzip2 magic
    st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b),  # zip magic
    st.text(max_size=3000).map(lambda t: t.encode("utf-8")),
    st.just(b""),
    st.just(b"SIMPLE  =                    T" + b" " * 2850),
    st.just(zlib.compress(b"SIMPLE  =                    T".ljust(2880))),
)


@settings(max_examples=150, **FUZZ)
@given(
    content=junk,
    reader=st.sampled_from(ALL_READERS),
    suffix=st.sampled_from([".pha", ".FTZ", ".gz", ".rmf", ""]),
)
def test_non_fits_content_raises(tmp_path, content, reader, suffix):
    """Arbitrary bytes, text, bytes behind a FITS, gzip, bzip2 or zip signature: OGIPError."""
    path = write(tmp_path, "junk" + suffix, content)
    expect_error(getattr(xv, reader), path, "spectrum")


@settings(max_examples=150, **FUZZ)
@given(
    name=st.sampled_from(SMALL + RMFS),
    junk_bytes=st.binary(min_size=1, max_size=4000),
    keep=st.floats(0, 1),
)
def test_real_start_then_junk_raises_or_reads(originals, tmp_path, name, junk_bytes, keep):
    """The start of a real file followed by junk (a file overwritten in the middle)."""
    data = originals[name]
    if name.endswith((".FTZ", ".gz")):  # the junk inside the compressed stream
        content = data[: int(keep * len(data))] + junk_bytes
    else:
        content = data[: int(keep * min(len(data), 200_000))] + junk_bytes
    path = write(tmp_path, name, content)
    attempt(READERS[KIND[name]][0], path, KIND[name])


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.pha"
    os.mkfifo(path)
    return path


def _symlink_loop(folder: Path) -> Path:
    a, b = folder / "a.pha", folder / "b.pha"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _under_a_file(folder: Path) -> Path:
    (folder / "plain.txt").write_text("text")
    return folder / "plain.txt" / "spectrum.pha"


def _broken_link(folder: Path) -> Path:
    link = folder / "broken.pha"
    link.symlink_to(folder / "absent.pha")
    return link


PATHS = {
    "missing file": lambda folder: folder / "absent.pha",
    "missing folder": lambda folder: folder / "absent" / "absent.pha",
    "a directory": lambda folder: folder,
    "an empty file": lambda folder: write(folder, "empty.pha", b""),
    "a text file": lambda folder: write(folder, "notes.txt", b"XMM-Newton pn spectrum\n" * 300),
    "a name too long for the file system": lambda folder: folder / ("s" * 300 + ".pha"),
    "a path too long for the file system": lambda folder: folder.joinpath(
        *["d" * 200] * 30, "spectrum.pha"
    ),
    "a file used as a folder": _under_a_file,
    "a broken symbolic link": _broken_link,
}
if hasattr(os, "mkfifo"):
    PATHS["a named pipe"] = _fifo
if hasattr(os, "symlink"):
    PATHS["a symbolic link loop"] = _symlink_loop
if Path("/proc/self/mem").exists():
    PATHS["a file that cannot be read (/proc/self/mem)"] = lambda folder: Path("/proc/self/mem")
PATH_CASES = [(case, reader) for case in sorted(PATHS) for reader in ALL_READERS]


@settings(max_examples=len(PATH_CASES), **STRUCTURE)
@given(case=st.sampled_from(PATH_CASES))
def test_paths_that_are_not_spectral_files_raise(tmp_path, case):
    """Missing paths, folders, pipes, links, names the system refuses, unreadable files."""
    kind, reader = case
    folder = Path(tempfile.mkdtemp(dir=tmp_path))
    path = PATHS[kind](folder)
    expect_error(getattr(xv, reader), path, "spectrum")
    expect_error(getattr(xv, reader), str(path), "spectrum")  # a str path, named as given
