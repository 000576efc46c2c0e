import asyncio
import socket
import ssl


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """A loopback TCP proxy that can be cut, to make a server unreachable mid-run. With an
    `ssl_context` it terminates TLS in front of a plaintext server (mutual TLS when the context
    requires client certificates)."""

    def __init__(
        self, target_host: str, target_port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.target = (target_host, target_port)
        self.ssl_context = ssl_context
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.cut_off = False
        self.refused = 0  # connections attempted since the cut

    async def start(self) -> int:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self.ssl_context
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        """Drop every connection and refuse new ones: the target is now unreachable. Each
        refused attempt is counted, so a test sees the client notice."""
        self.cut_off = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()
