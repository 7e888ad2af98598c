"""Reading request bodies and uploaded files with a size limit (413 before the whole body is
buffered)."""

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from runyard.problems import InvalidInput, PayloadTooLarge

#: what a multipart body may carry besides its file (boundaries, headers, small fields)
MULTIPART_SLACK = 1024 * 1024


def too_large(what: str, limit: int, setting: str | None = None) -> PayloadTooLarge:
    hint = f" ({setting})" if setting else ""
    return PayloadTooLarge(f"{what} exceeds {limit} bytes{hint}", limit=limit)


def check_declared_length(
    request: Request, limit: int, what: str = "the request body", setting: str | None = None
) -> None:
    """413 at once when the body's ``Content-Length`` is already over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(what, limit, setting)


async def read_limited(
    request: Request, limit: int, what: str = "the request body", setting: str | None = None
) -> bytes:
    check_declared_length(request, limit, what, setting)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(what, limit, setting)
        chunks.append(chunk)
    return b"".join(chunks)


def form_file(form: FormData, what: str, name: str = "file") -> UploadFile:
    """The multipart form's file part ``name``; 400 when there is none."""
    upload = form.get(name)
    if not isinstance(upload, UploadFile):
        raise InvalidInput(
            f"a multipart {what} needs a `{name}` part",
            errors=[{"loc": ["body", name], "msg": "Field required"}],
        )
    return upload


async def read_file(upload: UploadFile, limit: int, what: str, setting: str | None = None) -> bytes:
    """All of an uploaded file; 413 when it is over ``limit`` bytes."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise too_large(what, limit, setting)
    return data
