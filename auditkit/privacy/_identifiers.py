"""Direct identifiers in the inputs: the dataset table and DICOM headers.

The scan says *what kind* of identifier was found *where* (a column, a DICOM tag)
and how often, and never the values themselves: the report must not become the
leak. Kinds follow the HIPAA safe-harbour list of direct identifiers (45 CFR
164.514(b)(2)) that can appear in imaging metadata: names, record numbers, dates
tied to a person (birth, scan, admission), addresses, phone numbers, e-mail and
web addresses, social security numbers.

Detection is by column name (``dob``, ``mrn``, ``patient_name`` ...) and by the
shape of the values (e-mail, phone, date patterns). A column that merely *looks*
numeric is not flagged, so study pseudonyms and measurements pass; the dataset's
own patient-id column is reported separately as a pseudonym to check.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = [
    "DICOM_IDENTIFYING_TAGS",
    "IDENTIFIER_KINDS",
    "scan_dicom_headers",
    "scan_table",
]

#: Identifier kind -> plain-language name.
IDENTIFIER_KINDS: dict[str, str] = {
    "name": "person name",
    "record_number": "medical record / hospital / insurance number",
    "date_of_birth": "date of birth",
    "date": "date tied to a patient (scan, admission, report)",
    "address": "postal address or postcode",
    "phone": "phone or fax number",
    "email": "e-mail address",
    "ssn": "social security / national id number",
    "url": "web address (can lead to the source record)",
    "patient_id": "patient id used by the dataset (a pseudonym? check it is not an MRN)",
}

_NAME_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("date_of_birth", re.compile(r"(^|_)(dob|birth|date_?of_?birth|birth_?date)($|_)")),
    ("name", re.compile(r"(^|_)((first|last|given|family|sur|patient|full|middle)_?name|"
                        r"name|surname|forename)($|_)")),
    ("record_number", re.compile(r"(^|_)(mrn|medical_?record|record_?(no|number|num)|"
                                 r"hospital_?(no|number|id)|nhs_?(no|number)|accession|"
                                 r"insurance|health_?plan)($|_)")),
    ("ssn", re.compile(r"(^|_)(ssn|social_?security|national_?id|passport)($|_)")),
    ("address", re.compile(r"(^|_)(address|street|zip|zip_?code|post_?code|postal_?code|"
                           r"home_?address)($|_)")),
    ("phone", re.compile(r"(^|_)(phone|telephone|tel|mobile|fax|cell)($|_)")),
    ("email", re.compile(r"(^|_)(e_?mail|email_?address)($|_)")),
    ("date", re.compile(r"(^|_)(date|scan_?date|study_?date|admission|discharge|"
                        r"date_?of_?(scan|death|admission)|dod)($|_)")),
    ("url", re.compile(r"(^|_)(url|link|href|website)($|_)")),
]
_MONTHS = (r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?")
_VALUE_RULES: list[tuple[str, re.Pattern[str]]] = [
    ("email", re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")),
    ("ssn", re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")),
    ("phone", re.compile(r"(?<![\w.])(\+\d{1,3}[\s.-]?)?\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}(?![\w.])")),
    ("url", re.compile(r"https?://|www\.", re.IGNORECASE)),
    ("date", re.compile(
        r"(?<!\d)((19|20)\d{2}[-/.](0?[1-9]|1[0-2])[-/.](0?[1-9]|[12]\d|3[01])"
        r"|(0?[1-9]|[12]\d|3[01])[-/.](0?[1-9]|1[0-2])[-/.](19|20)\d{2}"
        r"|(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])/(19|20)\d{2})(?!\d)"
        r"|(?<![a-z])" + _MONTHS + r"\s+\d{1,2},?\s+(19|20)\d{2}"
        r"|(?<![0-9a-f])(19[5-9]\d|20[0-4]\d)(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?![0-9a-f])",
        re.IGNORECASE)),
    ("name", re.compile(r"^[A-Za-z'-]{2,}\^[A-Za-z'-]{2,}")),  # DICOM PN: Family^Given
    ("record_number", re.compile(r"\bMRN[:#\s-]*\d{4,}", re.IGNORECASE)),
]

#: DICOM keyword -> identifier kind, for the tags that identify a person.
DICOM_IDENTIFYING_TAGS: dict[str, str] = {
    "PatientName": "name",
    "PatientID": "record_number",
    "OtherPatientIDs": "record_number",
    "OtherPatientIDsSequence": "record_number",
    "OtherPatientNames": "name",
    "PatientBirthName": "name",
    "PatientMotherBirthName": "name",
    "PatientBirthDate": "date_of_birth",
    "PatientBirthTime": "date_of_birth",
    "PatientAddress": "address",
    "PatientTelephoneNumbers": "phone",
    "PatientTelecomInformation": "phone",
    "MedicalRecordLocator": "record_number",
    "AccessionNumber": "record_number",
    "PatientInsurancePlanCodeSequence": "record_number",
    "MilitaryRank": "name",
    "ReferringPhysicianName": "name",
    "PerformingPhysicianName": "name",
    "OperatorsName": "name",
    "InstitutionAddress": "address",
    "StudyDate": "date",
    "AcquisitionDate": "date",
    "ContentDate": "date",
    "SeriesDate": "date",
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def scan_table(table: pd.DataFrame, *, patient_column: str | None = None,
               max_rows: int = 20000) -> list[dict[str, Any]]:
    """Columns of a table that hold direct identifiers, by name and by value shape.

    Parameters
    ----------
    table : pandas.DataFrame
        The dataset table, read as text.
    patient_column : str, optional
        The dataset's patient-id column: reported as kind ``patient_id``.
    max_rows : int
        Rows inspected for value patterns (the first ``max_rows``).

    Returns
    -------
    list of dict
        One finding per (column, kind): ``column``, ``kind``, ``description``,
        ``found_by`` (``"column name"`` / ``"values"``), ``n_values`` (how many
        inspected non-empty values match; ``None`` when found by name only),
        ``n_checked``. Never a value.
    """
    findings: list[dict[str, Any]] = []
    head = table.head(max_rows)
    for column in table.columns:
        values = head[column].astype(str).fillna("").str.strip()
        values = values[(values != "") & (values.str.lower() != "nan")]
        kinds: dict[str, dict[str, Any]] = {}
        if patient_column is not None and column == patient_column:
            kinds["patient_id"] = {"found_by": "dataset description", "n_values": None}
        norm = _norm(str(column))
        for kind, pattern in _NAME_RULES:
            if pattern.search(norm) and kind not in kinds:
                kinds[kind] = {"found_by": "column name", "n_values": None}
                break
        for kind, pattern in _VALUE_RULES:
            hits = int(sum(1 for v in values if pattern.search(v)))
            if hits:
                if kind == "date" and "date_of_birth" in kinds:
                    kind = "date_of_birth"  # dates in a birth-date column are birth dates
                entry = kinds.setdefault(kind, {"found_by": "values", "n_values": hits})
                if entry["found_by"] != "values":
                    entry["found_by"] = f"{entry['found_by']} and values"
                entry["n_values"] = hits
        for kind, entry in kinds.items():
            findings.append({"column": str(column), "kind": kind,
                             "description": IDENTIFIER_KINDS[kind], **entry,
                             "n_checked": int(len(values))})
    return findings


def scan_dicom_headers(paths: Sequence[str | os.PathLike[str]] | Iterable[str | os.PathLike[str]]
                       ) -> dict[str, Any]:
    """Identifying tags and de-identification markers in DICOM headers.

    Parameters
    ----------
    paths : sequence of path
        DICOM files; read with ``stop_before_pixels`` (pixels are not decoded).

    Returns
    -------
    dict
        ``n_files``; ``tags``: one entry per identifying tag present and non-empty in
        at least one file (``tag``, ``kind``, ``description``, ``n_files``);
        ``markers``: for ``PatientIdentityRemoved`` and ``BurnedInAnnotation`` the
        number of files with ``YES``, ``NO`` and without the tag;
        ``n_with_deidentification_method``; ``n_unreadable``. Never a value.
    """
    import pydicom

    counts: dict[str, int] = {}
    markers = {m: {"YES": 0, "NO": 0, "absent": 0}
               for m in ("PatientIdentityRemoved", "BurnedInAnnotation")}
    n_files = n_bad = n_method = 0
    for path in paths:
        try:
            ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # unreadable header: counted, not raised (the scan goes on)
            n_bad += 1
            continue
        n_files += 1
        for tag in DICOM_IDENTIFYING_TAGS:
            value = ds.get(tag)
            raw = getattr(value, "value", value)
            if raw not in (None, "", b"") and str(raw).strip() not in ("", "^", "[]"):
                counts[tag] = counts.get(tag, 0) + 1
        for marker, tally in markers.items():
            raw = str(ds.get(marker, "") or "").strip().upper()
            tally[raw if raw in ("YES", "NO") else "absent"] += 1
        if str(ds.get("DeidentificationMethod", "") or "").strip() or \
                ds.get("DeidentificationMethodCodeSequence"):
            n_method += 1
    tags = [{"tag": t, "kind": DICOM_IDENTIFYING_TAGS[t],
             "description": IDENTIFIER_KINDS[DICOM_IDENTIFYING_TAGS[t]], "n_files": c}
            for t, c in counts.items()]
    return {"n_files": n_files, "n_unreadable": n_bad, "tags": tags, "markers": markers,
            "n_with_deidentification_method": n_method}


def dicom_paths(paths: Iterable[str]) -> list[Path]:
    """The DICOM files among ``paths`` (by suffix or the ``DICM`` preamble)."""
    from ..data import _is_dicom

    out = []
    for p in paths:
        path = Path(p)
        try:
            if _is_dicom(path):
                out.append(path)
        except OSError:
            continue
    return out
