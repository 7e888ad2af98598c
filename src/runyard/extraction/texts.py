"""The text a model reads from an uploaded document: text, Markdown, JSON, or PDF (its text
taken out with ``pypdf``)."""

import io
import logging
from pathlib import PurePosixPath

import orjson

from runyard.problems import BadRequest

#: content types by file suffix, for uploads that do not say (or say octet-stream)
SUFFIXES = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".json": "application/json",
    ".pdf": "application/pdf",
}
CONTENT_TYPES = frozenset(SUFFIXES.values())


def content_type_of(filename: str | None, declared: str | None) -> str:
    """``declared`` (without parameters) when it is one we read, else the file suffix's; a
    PDF is known by its first bytes too (see :func:`text_of`)."""
    base = (declared or "").split(";")[0].strip().lower()
    if base in CONTENT_TYPES:
        return base
    suffix = PurePosixPath(filename or "").suffix.lower()
    if suffix in SUFFIXES:
        return SUFFIXES[suffix]
    if base.startswith("text/") or not base or base == "application/octet-stream":
        return "text/plain"
    raise BadRequest(
        f"documents are text, Markdown, JSON or PDF, not {base!r}",
        code="unsupported_document_type",
    )


def text_of(data: bytes, content_type: str) -> tuple[str, str]:
    """(the text, the content type it was read as)."""
    if data.startswith(b"%PDF-") or content_type == "application/pdf":
        return _pdf_text(data), "application/pdf"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"the document is not UTF-8 text (byte {exc.start} is not UTF-8)",
            code="document_unreadable",
        ) from exc
    check_text(text, content_type)
    return text, content_type


def check_text(text: str, content_type: str) -> None:
    if content_type == "application/json":
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(
                f"the document is declared JSON but is not: {exc}", code="document_unreadable"
            ) from exc
    if "\x00" in text:
        raise BadRequest("the document's text contains NUL characters", code="document_unreadable")
    if not text.strip():
        raise BadRequest("the document has no text", code="document_empty")


def _pdf_text(data: bytes) -> str:
    from pypdf import PdfReader  # imported on first use: most servers never read a PDF
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # its warnings are about the file
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise BadRequest("the PDF is encrypted", code="document_unreadable")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
    except BadRequest:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BadRequest(
            f"the PDF could not be read: {type(exc).__name__}: {exc}", code="document_unreadable"
        ) from exc
    text = "\n\n".join(page for page in pages if page).replace("\x00", "")
    if not text.strip():
        raise BadRequest(
            "the PDF has no text to extract (a scanned PDF needs OCR first)",
            code="document_empty",
        )
    return text
