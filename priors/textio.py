"""Reading the user's input files (configs, parameter files, data tables, schedules): one reader, so every one of
them refuses a folder, an unreadable file and text that is not UTF-8 with the same named error, and accepts a UTF-8
byte-order mark (spreadsheet programs write one; it would otherwise become part of the first column name)."""

from __future__ import annotations

from pathlib import Path


def read_input_text(path: str | Path, what: str = "file", error: type[Exception] = ValueError) -> str:
    """The text of ``path`` (UTF-8, a leading BOM removed); ``error`` naming the file for a missing path
    (``FileNotFoundError``), a folder, an unreadable file or bytes that are not UTF-8 (with their offset: Latin-1
    text, for instance — re-save the file as UTF-8)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {what}")
    if path.is_dir():
        raise error(f"{path}: is a folder, not a {what}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: the {what} is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                    "save it as UTF-8") from None


def write_table(path: str | Path, header: list[str], rows, delimiter: str = ",") -> Path:
    """Write a CSV (or, with ``delimiter="\\t"``, TSV) table atomically: to a temporary name beside it, then moved into
    place — a kill leaves the old file or the new one, never half of it."""
    import csv

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=delimiter, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    tmp.replace(path)
    return path
