"""Prompts, model configs and documents over the API, and a PDF built by hand, for tests."""

from typing import Any

import httpx


async def make_prompt(
    client: httpx.AsyncClient,
    template: str = "Extract the invoice's fields as JSON.\n\n{{ document }}",
    name: str = "invoice",
    **body: Any,
) -> dict[str, Any]:
    response = await client.post("/v1/prompts", json={"name": name, "template": template, **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_version(
    client: httpx.AsyncClient, prompt_id: str, template: str, **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/prompts/{prompt_id}/versions", json={"template": template, **body}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_config(
    client: httpx.AsyncClient, model_id: str, name: str = "fake-t0", **body: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/model-configs", json={"name": name, "model_id": model_id, **body}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def make_document(
    client: httpx.AsyncClient,
    content: str,
    ground_truth: dict[str, Any] | None = None,
    name: str = "invoice.txt",
    **body: Any,
) -> dict[str, Any]:
    payload = {"name": name, "content": content, "ground_truth": ground_truth, **body}
    response = await client.post("/v1/documents", json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


def tiny_pdf(*pages: str) -> bytes:
    """A valid PDF with one line of Helvetica text per page, its xref offsets computed."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    font = 3 + 2 * count
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode(),
    ]
    for i, text in enumerate(pages):
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)
