"""HTTP requests from steps, over the host's ``wasi:http`` (``from durable_sdk import http``).

    from durable_sdk import http, step

    @step
    def charge(order):
        r = http.post("https://payments.example.com/charges", json=order).raise_for_status()
        return {"charge": r.json()["id"]}

A blocking client: every call returns once the whole response has arrived.
The host sends the request itself, and only for steps and only to hosts that
its ``--allow-http`` patterns allow (``--allow-http payments.example.com``);
anything else is refused, and the host then fails the step for good, saying
which flag would allow it. Workflow code must not call it: the workflow runs
again on every replay, so the host refuses its requests and fails the run;
make the call in a step.

Every request carries ``Idempotency-Key: <idempotency_key()>`` (the same on
every attempt of the step, across retries and crashes), so a service that
honours the header does the work once though the step may run again. Turn it
off with ``idempotency_key=False``, or give your own string.

Errors:

* a response is a response, whatever its status: check it with
  ``raise_for_status()`` (or ``ok``/``status``). ``raise_for_status()``
  raises ``Permanent`` for a 4xx other than 408 and 429 (no retry will fix
  the request, so the step fails at once) and ``HttpError`` (retryable) for
  any other status that is not 2xx;
* no response (connection refused, timeout, a cut or oversized body...)
  raises ``HttpError`` naming the ``wasi:http`` error code, e.g.
  ``POST http://127.0.0.1:8080/x failed: connection-refused``; a plain
  exception, so the step is retried;
* what no attempt can change (a URL that is not http or https, a header the
  host forbids, both ``body`` and ``json``) raises ``Permanent``.

Redirects (301, 302, 303, 307, 308) are followed, at most 5 in a row, unless
``follow_redirects=False``: 303, and 301 or 302 after anything but GET or
HEAD, go on as a GET without a body; 307 and 308 keep the method and body.
Each hop is a request of its own, which the host checks against the same
patterns, so a redirect to a host that is not allowed is refused.

Outside a component (plain Python, tests) a request raises ``RuntimeError``:
record the answer of the step that makes it, with
``durable_sdk.testing.FakeDurable(steps={...})``.
"""

import base64
import json as _json
import re
from urllib.parse import unquote, urljoin, urlsplit

import durable_sdk as _sdk

from . import _host

if _host.IN_COMPONENT:
    from componentize_py_types import Err, Ok
    from wit_world.imports import outgoing_handler, streams
    from wit_world.imports import wasi_http_types as wasi

NO_HOST = (
    "durable_sdk.http sends requests through the durable host only; in a test, record "
    "the answer of the step that makes the request instead (FakeDurable(steps={name: answer}))"
)

__all__ = ["HttpError", "Response", "request", "get", "post", "put", "patch", "delete", "head"]

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 4096  # the most one write may carry, as in blocking-write-and-flush
_READ = 64 * 1024


class HttpError(Exception):
    """A request got no usable response, or ``raise_for_status`` found a status
    that a later attempt may not get (5xx, 408, 429, 3xx): retryable, like any
    exception but ``Permanent`` raised from a step.

    ``code`` is the ``wasi:http`` error code's name when there was no response
    (``"connection-refused"``), else None; ``status`` and ``response`` are the
    response's when there was one, else None.
    """

    def __init__(self, message, *, code=None, status=None, response=None):
        super().__init__(message)
        self.code = code
        self.status = status
        self.response = response


class Response:
    """A whole response: ``status`` (int), ``headers`` (dict of lower-case
    names; repeated headers joined with ", "), ``body`` (bytes), ``url`` (the
    last one, after redirects) and ``method`` (the one that got it)."""

    def __init__(self, method, url, status, headers, body):
        self.method = method
        self.url = url
        self.status = status
        self.headers = headers
        self.body = body

    def __repr__(self):
        return f"<Response {self.status} from {self.method} {_shown(self.url)}, {len(self.body)} B>"

    @property
    def ok(self):
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def text(self):
        """The body as text, in the charset of its Content-Type (UTF-8 if none);
        bytes that do not decode become U+FFFD."""
        m = re.search(r"charset=\"?([\w.:-]+)", self.headers.get("content-type", ""), re.I)
        try:
            return self.body.decode(m.group(1) if m else "utf-8", errors="replace")
        except LookupError:  # an unknown charset
            return self.body.decode("utf-8", errors="replace")

    def json(self):
        """The body parsed as JSON (a ``ValueError`` if it is not JSON)."""
        return _json.loads(self.text())

    def raise_for_status(self):
        """Returns the response if its status is 2xx. Otherwise raises
        ``Permanent`` for a 4xx other than 408 and 429 (the step fails at
        once), and ``HttpError`` for any other status (the step is retried).
        Either exception has ``status`` and ``response`` attributes."""
        if self.ok:
            return self
        message = f"{self.method} {_shown(self.url)} returned {self.status}"
        snippet = self.text().strip()
        if snippet:
            message += ": " + (snippet if len(snippet) <= 200 else snippet[:200] + "...")
        if 400 <= self.status < 500 and self.status not in (408, 429):
            e = _sdk.Permanent(message)
            e.status = self.status
            e.response = self
            raise e
        raise HttpError(message, status=self.status, response=self)


def request(method, url, *, headers=None, body=None, json=None, idempotency_key=True,
            timeout_ms=None, follow_redirects=True):
    """Sends a request and returns its whole ``Response``, whatever its status.

    ``headers``: a dict or a list of (name, value) pairs; values are str or
    bytes. ``body``: bytes or str (sent as UTF-8); ``json``: any JSON value but
    None, sent as its (compact) JSON text with ``Content-Type: application/json`` (unless
    ``headers`` sets one). ``idempotency_key``: True sends the step's
    ``idempotency_key()`` as ``Idempotency-Key`` (unless ``headers`` has one),
    a str sends that, False sends none. ``timeout_ms``: the longest to connect,
    and to wait for the response to start and for each part of its body
    (the host bounds these by the step's own timeout anyway).
    ``follow_redirects``: see the module's documentation.

    Steps only: from workflow code the host refuses the request and fails the
    run.
    """
    if not _host.IN_COMPONENT:
        raise RuntimeError(NO_HOST)
    if body is not None and json is not None:
        raise _sdk.Permanent("give a request body or json, not both")
    method = str(method).upper()
    fields = _fields(headers)
    names = {name.lower() for name, _ in fields}
    if json is not None:
        body = _json.dumps(json, separators=(",", ":"), allow_nan=False)
        if "content-type" not in names:
            fields.append(("content-type", b"application/json"))
    if isinstance(body, str):
        body = body.encode()
    if body is not None and not isinstance(body, (bytes, bytearray, memoryview)):
        raise _sdk.Permanent(f"a request body is bytes or str, not {type(body).__name__}")
    if idempotency_key is not False and idempotency_key is not None and "idempotency-key" not in names:
        key = _sdk.idempotency_key() if idempotency_key is True else str(idempotency_key)
        fields.append(("idempotency-key", key.encode()))

    for _ in range(MAX_REDIRECTS + 1):
        response = _send(method, url, fields, None if body is None else bytes(body), timeout_ms)
        location = response.headers.get("location")
        if not follow_redirects or response.status not in _REDIRECTS or not location:
            return response
        target = urljoin(url, location.strip())
        if response.status == 303 or (response.status in (301, 302) and method not in ("GET", "HEAD")):
            method = "GET" if method != "HEAD" else "HEAD"
            body = None
            fields = [(n, v) for n, v in fields if n.lower() not in ("content-type", "content-length")]
        if _origin(target) != _origin(url):  # credentials are for the origin that was asked
            fields = [(n, v) for n, v in fields if n.lower() not in ("authorization", "cookie")]
        url = target
    raise HttpError(
        f"{method} {_shown(url)} failed: more than {MAX_REDIRECTS} redirects in a row",
        status=response.status,
        response=response,
    )


def get(url, **kw):
    """``request("GET", url, **kw)``."""
    return request("GET", url, **kw)


def head(url, **kw):
    """``request("HEAD", url, **kw)``."""
    return request("HEAD", url, **kw)


def post(url, **kw):
    """``request("POST", url, **kw)``."""
    return request("POST", url, **kw)


def put(url, **kw):
    """``request("PUT", url, **kw)``."""
    return request("PUT", url, **kw)


def patch(url, **kw):
    """``request("PATCH", url, **kw)``."""
    return request("PATCH", url, **kw)


def delete(url, **kw):
    """``request("DELETE", url, **kw)``."""
    return request("DELETE", url, **kw)


# --- one request over wasi:http -------------------------------------------

_METHODS = {
    "GET": wasi.Method_Get, "HEAD": wasi.Method_Head, "POST": wasi.Method_Post,
    "PUT": wasi.Method_Put, "DELETE": wasi.Method_Delete, "CONNECT": wasi.Method_Connect,
    "OPTIONS": wasi.Method_Options, "TRACE": wasi.Method_Trace, "PATCH": wasi.Method_Patch,
} if _host.IN_COMPONENT else {}


def _fields(headers):
    """The caller's headers as a list of (name, bytes)."""
    if headers is None:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    out = []
    for name, value in items:
        if isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, (bytes, bytearray)):
            value = str(value).encode()
        out.append((str(name), bytes(value)))
    return out


def _origin(url):
    u = urlsplit(url)
    return (u.scheme.lower(), (u.hostname or "").lower(), u.port)


def _shown(url):
    """The URL without its query (which may hold secrets) and user info."""
    u = urlsplit(url)
    host = u.netloc.rpartition("@")[2]
    return f"{u.scheme}://{host}{u.path}" if u.scheme else url


def _code_name(code):
    """The WIT name of a wasi:http error-code (``HTTP-request-denied``)."""
    words = re.findall(r"[A-Z][a-z0-9]*", type(code).__name__.removeprefix("ErrorCode_"))
    upper = {"dns": "DNS", "tls": "TLS", "http": "HTTP", "ip": "IP", "uri": "URI"}
    name = "-".join(upper.get(w.lower(), w.lower()) for w in words)
    value = getattr(code, "value", None)  # a limit or a message, for some codes
    if isinstance(value, (str, int)) and value != "":
        name += f" ({value})"
    return name


def _failure(method, url, code):
    name = _code_name(code)
    message = f"{method} {_shown(url)} failed: {name}"
    if isinstance(code, wasi.ErrorCode_HttpRequestDenied):
        message += ": the host refused the request (not allowed by its --allow-http patterns)"
    return HttpError(message, code=name.split(" ")[0])


def _close(resource):
    if resource is not None:
        resource.__exit__(None, None, None)


def _block(source):
    """Waits until ``source`` (a stream or future) is ready."""
    pollable = source.subscribe()
    try:
        pollable.block()
    finally:
        _close(pollable)


def _stream_error(method, url, error):
    """The HttpError of a stream-error (``closed`` or ``last-operation-failed``)."""
    code, detail = None, "the stream closed early"
    if isinstance(error, streams.StreamError_LastOperationFailed):
        try:
            code = wasi.http_error_code(error.value)
            detail = error.value.to_debug_string()
        finally:
            _close(error.value)
    if code is not None:
        return _failure(method, url, code)
    return HttpError(f"{method} {_shown(url)} failed: {detail}")


def _send(method, url, fields, body, timeout_ms):
    """Sends one request (no redirects) and reads its whole response."""
    u = urlsplit(url)
    scheme = u.scheme.lower()
    if scheme not in ("http", "https") or not u.hostname:
        raise _sdk.Permanent(f"{_shown(url)} is not an http or https URL")
    authority = u.netloc.rpartition("@")[2]
    fields = list(fields)
    if u.username is not None and not any(n.lower() == "authorization" for n, _ in fields):
        basic = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
        fields.append(("authorization", b"Basic " + base64.b64encode(basic)))
    if body is not None:
        fields = [(n, v) for n, v in fields if n.lower() != "content-length"]
        fields.append(("content-length", str(len(body)).encode()))
    path = (u.path or "/") + (f"?{u.query}" if u.query else "")

    try:
        headers = wasi.Fields.from_list(fields)
    except Err as e:
        bad = type(e.value).__name__.removeprefix("HeaderError_")
        raise _sdk.Permanent(f"{method} {_shown(url)}: the headers are refused ({bad}): "
                             f"{', '.join(n for n, _ in fields)}") from None
    outgoing = wasi.OutgoingRequest(headers)
    try:
        kind = _METHODS.get(method)
        outgoing.set_method(kind() if kind else wasi.Method_Other(method))
        outgoing.set_scheme(wasi.Scheme_Https() if scheme == "https" else wasi.Scheme_Http())
        outgoing.set_authority(authority)
        outgoing.set_path_with_query(path)
    except Err:
        _close(outgoing)
        raise _sdk.Permanent(f"{method} {_shown(url)}: not a request wasi:http can make") from None
    options = None
    if timeout_ms is not None:
        options = wasi.RequestOptions()
        ns = max(0, int(timeout_ms * 1_000_000))
        for setter in (options.set_connect_timeout, options.set_first_byte_timeout,
                       options.set_between_bytes_timeout):
            try:
                setter(ns)
            except Err:
                pass  # a timeout this host does not take: the step's own still holds
    outgoing_body = outgoing.body()
    try:
        # Takes the request and the options (both owned by the host now).
        future = outgoing_handler.handle(outgoing, options)
    except Err as e:
        _close(outgoing_body)
        raise _failure(method, url, e.value) from None

    # The request is on its way: write the body (check-write, then at most
    # what it permits, at most 4096 bytes a write), flush, finish. A stream
    # that closes once all is written has done its work (as for
    # blocking-write-and-flush); one that fails before means the request
    # failed, and the response's future says why.
    write_error = None
    stream = outgoing_body.write()
    try:
        data = memoryview(body or b"")
        offset = 0
        while offset < len(data):
            permitted = stream.check_write()
            if permitted == 0:
                _block(stream)
                continue
            n = min(permitted, _CHUNK, len(data) - offset)
            stream.write(bytes(data[offset:offset + n]))
            offset += n
        if len(data):
            try:
                stream.flush()
                _block(stream)
                stream.check_write()  # reports a flush that failed
            except Err as e:
                if not isinstance(e.value, streams.StreamError_Closed):
                    raise
    except Err as e:
        write_error = e.value  # a stream-error
    finally:
        _close(stream)
    if write_error is None:
        try:
            wasi.OutgoingBody.finish(outgoing_body, None)
        except Err as e:
            write_error = e.value  # an error-code
    else:
        _close(outgoing_body)  # unfinished: the host sees the body as cut

    try:
        _block(future)
        result = future.get()
    finally:
        _close(future)
    if not isinstance(result, Ok):  # None (not ready) or err (taken already): neither happens here
        raise HttpError(f"{method} {_shown(url)} failed: no response from the host")
    if isinstance(result.value, Err):
        raise _failure(method, url, result.value.value)
    # A response came: it is the server's answer, even if it did not read
    # the whole body (a 413, say).
    incoming = result.value.value
    try:
        return _read(method, url, incoming)
    finally:
        _close(incoming)


def _read(method, url, incoming):
    """The status, headers and whole body of an incoming-response."""
    status = incoming.status()
    fields = incoming.headers()
    try:
        headers = {}
        for name, value in fields.entries():
            name = name.lower()
            value = value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    finally:
        _close(fields)
    body = incoming.consume()
    chunks = []
    try:
        stream = body.stream()
        try:
            while True:
                try:
                    chunks.append(stream.blocking_read(_READ))
                except Err as e:
                    if isinstance(e.value, streams.StreamError_Closed):
                        break
                    raise _stream_error(method, url, e.value) from None
        finally:
            _close(stream)
    except BaseException:
        _close(body)
        raise
    _close(wasi.IncomingBody.finish(body))  # the trailers: not read
    return Response(method, url, status, headers, b"".join(chunks))
