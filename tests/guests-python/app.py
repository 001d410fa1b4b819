"""A wasi:http component written in Python and built with componentize-py,
as its users build it: Shoal must serve it unchanged (see tests/compat.rs)."""

from wit_world import exports
from wit_world.imports.types import (
    Fields, IncomingRequest, OutgoingResponse, ResponseOutparam, OutgoingBody,
)
from componentize_py_types import Ok


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
        body = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        stream = body.write()
        stream.blocking_write_and_flush(f"hello from python at {path}\n".encode())
        # Drop the stream before finishing the body, as wasi:http requires.
        stream.__exit__(None, None, None)
        OutgoingBody.finish(body, None)
