"""The import upload's size cap, enforced while the upload streams in.

FILE_UPLOAD_MAX_MEMORY_SIZE = 0 already sends every uploaded file to a temporary file, so
the web process never holds a file whole; this handler adds the cap
(settings.IMPORT_MAX_UPLOAD_BYTES) so a file over it is refused as it arrives, not after
a gigabyte more has been written to disk.

How a view uses it. Django reads the request body when CSRF protection first looks at
request.POST, after which upload handlers can no longer be changed; so the documented
pattern (docs "Modifying upload handlers on the fly") is an outer view exempt from CSRF
that installs the handler, and an inner view that is CSRF-protected:

    @csrf_exempt
    def import_upload(request: HttpRequest) -> HttpResponse:
        cap = install_upload_cap(request)
        return _import_upload(request, cap)

    @csrf_protect
    def _import_upload(request: HttpRequest, cap: UploadSizeCap) -> HttpResponse:
        if request.method == "POST" and cap.refusal:
            ...  # show cap.refusal as the form's error; nothing was kept
"""

from __future__ import annotations

from typing import Any, BinaryIO, cast

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from signals_app.validation.sizes import human_size

# Room for the multipart framing and the form's other fields (app key, mode, tokens)
# when judging the request's declared length against the file cap.
FORM_OVERHEAD_BYTES = 64 * 1024


def too_large_message(limit: int) -> str:
    return (
        f"The file is larger than {human_size(limit)}, the most one import may hold. "
        "Split it into smaller files, or compress it with gzip (a .gz file is accepted)."
    )


class UploadSizeCap(FileUploadHandler):
    """Stops the upload as soon as a file passes `limit` bytes (or the request declares
    more than that could hold); Django's other handlers then delete what they wrote.

    `refusal` holds the message to show when the upload was stopped, else None.
    """

    def __init__(self, request: HttpRequest | None = None, *, limit: int | None = None) -> None:
        super().__init__(request)
        self.limit = limit if limit is not None else settings.IMPORT_MAX_UPLOAD_BYTES
        self._refusal: str | None = None
        self._declared_too_large = False
        self._head: _HeadRecorder | None = None

    @property
    def refusal(self) -> str | None:
        """Why the upload was stopped, or None. The body is parsed on first use of
        request.POST or request.FILES; reading this parses it too, so the answer never
        comes too early."""
        if self.request is not None and self.request.method == "POST":
            self.request.FILES  # noqa: B018 (parses the body)
        return self._refusal

    def handle_raw_input(
        self,
        input_data: Any,
        META: dict[str, Any],
        content_length: int,
        boundary: Any,
        encoding: str | None = None,
    ) -> None:
        # Raising StopUpload here would escape Django's parser as a server error, so the
        # verdict on the declared length is kept for new_file, where stopping is handled.
        self._declared_too_large = content_length > self.limit + FORM_OVERHEAD_BYTES
        # Django's parser skips a part whose headers are not UTF-8 without a word: the
        # beginning of the body is kept to tell why a file did not arrive.
        if input_data is self.request and self.request is not None:
            self._head = _HeadRecorder(self.request._stream)
            self.request._stream = cast(BinaryIO, self._head)

    @property
    def file_name_unreadable(self) -> bool:
        """Whether the body held a file part whose name is not UTF-8 (Django dropped it)."""
        if self._head is None:
            return False
        for line in self._head.data.split(b"\r\n"):
            if line[:20].lower().startswith(b"content-disposition:") and b"filename" in line:
                try:
                    line.decode()
                except UnicodeDecodeError:
                    return True
        return False

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        if self._declared_too_large:
            self._refuse()

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self._refuse()
        return raw_data  # the next handler (a temporary file) stores it

    def file_complete(self, file_size: int) -> None:
        return None  # the temporary file handler builds the UploadedFile

    def _refuse(self) -> None:
        self._refusal = too_large_message(self.limit)
        # connection_reset: do not read (and discard) the rest of an oversized body; the
        # page should also check the file's size before sending, for the gentlest message.
        raise StopUpload(connection_reset=True)


class _HeadRecorder:
    """A request body stream that keeps a copy of its first bytes as they are read."""

    KEEP = 64 * 1024

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.data = b""

    def read(self, *args: Any) -> bytes:
        chunk: bytes = self._stream.read(*args)
        if len(self.data) < self.KEEP:
            self.data += chunk[: self.KEEP - len(self.data)]
        return chunk

    def readline(self, *args: Any) -> bytes:
        line: bytes = self._stream.readline(*args)
        return line

    def close(self) -> None:
        self._stream.close()


def install_upload_cap(request: HttpRequest, *, limit: int | None = None) -> UploadSizeCap:
    """Put the cap in front of this request's upload handlers (call before request.POST or
    request.FILES is touched; see the module docstring for the CSRF pattern)."""
    cap = UploadSizeCap(request, limit=limit)
    # Before the body is read the handlers are a plain list (ImmutableList only after).
    cast(list[FileUploadHandler], request.upload_handlers).insert(0, cap)
    return cap
